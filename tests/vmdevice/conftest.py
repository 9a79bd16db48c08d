"""tests/vmdevice: the "vm" marker (tests that boot QEMU; deselect them with -m 'not vm')."""


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots a VM under qemu-system-x86_64 (TCG); about 10-30 s each")
