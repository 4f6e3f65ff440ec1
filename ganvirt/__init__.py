"""ganvirt: GAN data virtualization (CLI, settings, sources, snapshots, gates)."""
