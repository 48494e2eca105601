"""``eventkit-collector setup [--dry-run]``: create the cloud resources the settings name.

The bucket of ``EVENTKIT_EVENT_STORE=gcs`` (``GCP_GCS_BUCKET``), and in
``EVENTKIT_QUEUE_MODE=pubsub`` the topic and the archive subscription. Idempotent: what exists is
left as it is. ``--dry-run`` prints the same list and touches nothing (no client is created).
The clients honour ``STORAGE_EMULATOR_HOST`` / ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventkit_collector.settings import Settings


@dataclass(frozen=True)
class Resource:
    kind: str  # "bucket" | "topic" | "subscription"
    name: str  # gs://bucket or projects/p/topics/t ...


def planned(settings: Settings) -> list[Resource]:
    """What the settings need, in creation order (a subscription needs its topic)."""
    wanted: list[Resource] = []
    project = settings.gcp_project_id
    if settings.eventkit_event_store == "gcs" and settings.gcp_gcs_bucket:
        wanted.append(Resource("bucket", f"gs://{settings.gcp_gcs_bucket}"))
    if settings.eventkit_queue_mode == "pubsub" and project:
        topic = f"projects/{project}/topics/{settings.eventkit_pubsub_topic}"
        sub = f"projects/{project}/subscriptions/{settings.eventkit_pubsub_subscription}"
        wanted += [Resource("topic", topic), Resource("subscription", sub)]
    return wanted


def _create_bucket(settings: Settings) -> bool:
    """True when it was created, False when it existed."""
    from google.api_core.exceptions import Conflict
    from google.cloud import storage

    client = storage.Client(project=settings.gcp_project_id)
    try:
        if client.lookup_bucket(settings.gcp_gcs_bucket) is not None:
            return False
        client.create_bucket(settings.gcp_gcs_bucket)
    except Conflict:  # created meanwhile, or owned by someone else: the next write will tell
        return False
    finally:
        client.close()
    return True


def _create_pubsub(settings: Settings) -> None:
    from eventkit_queues.pubsub import ensure_subscription, ensure_topic

    project = settings.gcp_project_id
    assert project is not None  # planned() lists Pub/Sub resources only with a project
    ensure_topic(project, settings.eventkit_pubsub_topic)
    # unordered, as the collector itself creates it (see wiring._create_topic)
    ensure_subscription(
        project,
        settings.eventkit_pubsub_topic,
        settings.eventkit_pubsub_subscription,
        enable_message_ordering=False,
    )


def run_setup(settings: Settings, dry_run: bool) -> int:
    wanted = planned(settings)
    if not wanted:
        print(
            "nothing to create: EVENTKIT_EVENT_STORE=local and EVENTKIT_QUEUE_MODE=async "
            "use no cloud resource"
        )
        return 0
    if dry_run:
        for resource in wanted:
            print(f"would create (unless it exists): {resource.kind} {resource.name}")
        return 0
    kinds = {r.kind for r in wanted}
    if "bucket" in kinds:
        created = _create_bucket(settings)
        bucket = next(r for r in wanted if r.kind == "bucket")
        print(f"{'created' if created else 'exists'}: bucket {bucket.name}")
    if "topic" in kinds:
        _create_pubsub(settings)
        for resource in wanted:
            if resource.kind != "bucket":
                print(f"ready: {resource.kind} {resource.name}")
    return 0
