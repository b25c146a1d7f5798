"""Webhooks: signed JSON POSTs to subscribers when a job ends, an upload completes or people merge."""
