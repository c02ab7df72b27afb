"""Background work of {{project_name}}: a package without ``router`` is imported only.

Register scheduled jobs and thread-pool tasks here; they start with the app's lifespan,
never at import.
"""
