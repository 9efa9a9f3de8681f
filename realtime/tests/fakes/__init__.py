"""What only the core's own tests need: their environment (`env`). Stand-ins come from the kit,
`chalice_realtime.testing`."""
