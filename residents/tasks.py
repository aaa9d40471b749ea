"""django-q2 tasks for residents: thin, take ids, call one service.

* refresh_resident_profile(resident_id): queued after a follow is committed
  (messaging.services.wake_profile_refresh).
* refresh_stale_profiles(): scheduled every 10 minutes (migration 0003_profile_refresh_schedule);
  also retries what a failed fetch left.
"""

from residents import line_services


def refresh_resident_profile(resident_id: int) -> str:
    return line_services.resident_profile_refresh(resident_id=resident_id)


def refresh_stale_profiles() -> dict:
    return line_services.resident_profiles_refresh_stale()
