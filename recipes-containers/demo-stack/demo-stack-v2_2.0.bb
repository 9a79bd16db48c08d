# nooelint: oelint.var.bbclassextend,oelint.var.mandatoryvar.SRC_URI - makes a device artifact (no native or SDK variant) from another recipe's image (nothing to fetch)
# Release 2.0 of the demo stack: the same image, demo-heartbeat now beats every
# five seconds. The changed container spec makes the module replace the
# container, which the runtime tests then roll back to 1.0.
require demo-stack.inc

DOCKER_ARTIFACT_RUN_ARGS = "${DEMO_STACK_RUN_ARGS} --env HEARTBEAT_INTERVAL=5"
