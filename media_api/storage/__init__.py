"""Where the service keeps the media it stores itself: a local directory or an S3-compatible bucket.

``config`` reads ``MOMENTRY_STORAGE_URL`` (and the standard ``AWS_*`` variables); the rest of the
package (reading stored objects, writing uploads, deleting what the service owns) builds on it.
"""
