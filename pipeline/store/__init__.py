"""The on-disk stores and their readers: manifests, the pixel array, atomic writes and ownership
(files), provenance, checkpoints, PNG codecs, the DVC-versioned set (versioned, scm) and the
exchange with a remote training node. Everything ganaug writes is written, and read back as
untrusted, here."""
