"""ganvirt: GAN data virtualization. This package is the front door: the ``ganvirt`` CLI,
``ganvirt up`` and the settings; the work happens in flows/, tasks/ and the libraries below."""
