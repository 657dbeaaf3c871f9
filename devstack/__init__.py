"""The embedded local default: Tansu broker + tritonserver + worker, a replayer and a tail."""
