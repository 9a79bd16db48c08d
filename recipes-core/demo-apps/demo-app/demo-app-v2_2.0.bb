# nooelint: oelint.var.bbclassextend - makes a device artifact; no native or SDK variant
# Release 2.0: changes bin/demo-app and etc/demo-app.conf, adds
# share/release-notes.txt and removes share/welcome.txt.
require demo-app.inc
