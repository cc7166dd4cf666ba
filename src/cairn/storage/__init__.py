"""Where results live: content-addressed artifact stores and the metadata database."""
