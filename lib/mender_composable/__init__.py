"""Python helpers for the classes of meta-mender-composable.

conf/layer.conf loads this package with ``addpylib ${LAYERDIR}/lib mender_composable``:
BitBake imports it and the modules named in BBIMPORTS, so class code calls them
as ``mender_composable.<module>.<function>``. The modules are plain Python (no
``bb``), so tests/layer/test_classes.py tests them with pytest.
"""

BBIMPORTS = ["provides", "rootfs_provides"]
