# nooelint: oelint.var.bbclassextend,oelint.var.mandatoryvar.SRC_URI - makes a device artifact (no native or SDK variant) from another recipe's image (nothing to fetch)
# Release 1.0 of the demo stack: demo-heartbeat beats every ten seconds.
require demo-stack.inc

DOCKER_ARTIFACT_RUN_ARGS = "${DEMO_STACK_RUN_ARGS}"
