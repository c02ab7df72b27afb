"""Background work of {{project_name}}: a package without ``router`` is imported only.

Register scheduled jobs and thread-pool tasks here. Registering runs nothing: the
schedulers and the thread pool start with the app's lifespan and stop with it. See them
at ``{base_url}/tasks``.
"""

from fastflyer import background_scheduler, logger


# With flyer_redis_host set, a locked job runs once per fire across every worker and
# instance; without Redis each process runs it (a warning says so).
@background_scheduler.lock()
def heartbeat() -> None:
    logger.debug("{{project_name}} is alive")


background_scheduler.add_job(heartbeat, "interval", minutes=1, id="heartbeat")

# An async job runs on the app's event loop:
#
#     from fastflyer import asyncio_scheduler
#
#     @asyncio_scheduler.lock()
#     async def refresh() -> None: ...
#
#     asyncio_scheduler.add_job(refresh, "cron", minute="*/10", id="refresh")
#
# A long-running task, one copy across all processes:
#
#     from fastflyer import threadpool
#
#     @threadpool.submit(single_job=True)
#     def consume() -> None:
#         while not threadpool.is_stopped():
#             ...
#             threadpool.sleep(1)
