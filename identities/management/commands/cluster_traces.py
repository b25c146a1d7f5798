"""manage.py cluster_traces [--threshold D] [--min-size N] — group unbound traces into pending identities."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from identities.suggestions import CLUSTER_DISTANCE, cluster_unbound_traces


class Command(BaseCommand):
    help = ("Group unbound traces with face embeddings (across files) into pending identities (source auto), "
            "so staff name each person once.")

    def add_arguments(self, parser):
        parser.add_argument("--threshold", type=float, default=CLUSTER_DISTANCE,
                            help=f"largest embedding distance to a cluster's mean (default {CLUSTER_DISTANCE})")
        parser.add_argument("--min-size", type=int, default=2,
                            help="traces a new cluster needs to become an identity (default 2)")
        parser.add_argument("--queue", action="store_true",
                            help="submit a job for the workers instead (default threshold and size)")

    def handle(self, *args, threshold, min_size, queue=False, **options):
        if queue:
            from jobs.models import Job
            from jobs.queueing import queue_all

            queue_all(Job.Kind.CLUSTER, write=self.stdout.write)
            return
        if not 0.0 < threshold < 2.0:
            raise CommandError("--threshold must be between 0 and 2")
        if min_size < 1:
            raise CommandError("--min-size must be at least 1")
        result = cluster_unbound_traces(threshold=threshold, min_size=min_size)
        self.stdout.write(
            f"{result.traces_considered} unbound trace(s) with embeddings; {result.identities_created} pending "
            f"identit{'y' if result.identities_created == 1 else 'ies'} created, {result.traces_bound} trace(s) bound "
            f"({result.traces_joined_existing} joined existing pending identities)"
        )
