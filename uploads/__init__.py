"""Resumable uploads over tus 1.0.0 (docs/uploads.md): a client sends a video in chunks, the bytes go
straight to the configured storage (local directory or S3 multipart), and a register job makes it a file."""
