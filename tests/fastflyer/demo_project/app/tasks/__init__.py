# A package without `router`: imported only (jobs would register themselves here).
IMPORTED = True
