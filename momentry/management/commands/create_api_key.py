"""manage.py create_api_key USERNAME [--files UUID…] [--days N] [--write] [--name NAME]

Creates the user if missing (role ``user``, no password: the key is their only
credential), then a new API key, and prints the key once, alone on the last line, so a
script can take it with ``tail -n 1``. Only the key's SHA-256 is stored.

A curl-able flow::

    KEY=$(python manage.py create_api_key alice --days 30 | tail -n 1)
    API=http://127.0.0.1:8000
    curl -s "$API/api/v1/files" -H "X-API-Key: $KEY"
    curl -s "$API/api/v1/file/$FILE_UUID/traces?sort=-face_count&page_size=10" -H "X-API-Key: $KEY"

    # write access to identities (create, rename, bind, unbind, merge, delete):
    WKEY=$(python manage.py create_api_key curator --write | tail -n 1)
    ID=$(curl -s -X POST "$API/api/v1/identities" -H "X-API-Key: $WKEY" \\
         -H "Content-Type: application/json" -d '{"name": "Ada Lovelace"}' | jq -r .identity_uuid)
    curl -s -X POST "$API/api/v1/identity/$ID/bind/trace" -H "X-API-Key: $WKEY" \\
         -H "Content-Type: application/json" -d "{\\"file_uuid\\": \\"$FILE_UUID\\", \\"trace_id\\": 3}"

    # a key that only sees two files (others answer 404, as if unknown):
    python manage.py create_api_key partner --files $FILE_A $FILE_B --days 7
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from momentry import services
from momentry.errors import BadRequest


class Command(BaseCommand):
    help = "Create an API key for USERNAME (creating the user if needed); prints the key once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--files", nargs="+", metavar="FILE_UUID", help="limit the key to these files")
        parser.add_argument("--days", type=int, default=None, help="days until expiry (default MOMENTRY_API_KEY_DAYS)")
        parser.add_argument("--write", action="store_true", help="allow identity changes (rename/bind/merge/delete)")
        parser.add_argument("--name", default="", help="a label for the key (shown in the admin)")

    def handle(self, *args, username: str, files, days, write: bool, name: str, **options):
        user_model = get_user_model()
        try:
            with transaction.atomic():
                user, created = user_model.objects.get_or_create(**{user_model.USERNAME_FIELD: username})
                if created:
                    user.set_unusable_password()
                    user.save()
                issued = services.create_api_key(user, name=name or "command", days=days, write=write,
                                                 file_uuids=files)
        except BadRequest as exc:
            raise CommandError(exc.message) from None
        key = issued.api_key
        scope = f"{key.files.count()} file(s)" if key.limit_to_files else "all files"
        self.stdout.write(f"{'Created user' if created else 'User'} {username} (role {services.role_of(user)})")
        self.stdout.write(f"Key {key.prefix}… expires {key.expires_at.isoformat()}, "
                          f"{'write' if key.can_write else 'read-only'}, scope: {scope}")
        self.stdout.write("Shown once; only its hash is stored:")
        self.stdout.write(issued.key)
