# Sourced by the scripts that run part of the suite on another environment (another Python, the
# lowest versions pyproject.toml allows, another websockets). One place names each part.
# shellcheck disable=SC2034  # used by the scripts that source this file
FANOUT_TESTS=(
  tests/unit/test_fanout.py tests/unit/test_policy.py tests/unit/test_policy_lag.py
  tests/unit/test_policy_properties.py tests/unit/test_policy_video.py tests/unit/test_policy_events.py
  tests/unit/test_policy_mixed.py tests/integration/test_gateway_slow.py
  tests/integration/test_gateway_inprocess.py tests/integration/test_gateway_requests.py
)
PRODUCER_TESTS=(
  tests/unit/test_capture.py tests/unit/test_detectors.py tests/unit/test_producer_pieces.py
  tests/unit/test_onnx.py tests/unit/test_analytics.py tests/unit/test_zones.py
  tests/integration/test_producer_cli.py tests/integration/test_producer_demand.py
  tests/integration/test_producer_onnx.py tests/integration/test_producer_previews.py
  tests/integration/test_producer_publish.py tests/integration/test_producer_rate.py
  tests/integration/test_producer_redis.py tests/integration/test_producer_sources.py
  tests/integration/test_producer_stop.py tests/integration/test_producer_video.py
  tests/integration/test_producer_events.py
)
# A camera to a client through every real part: producer, valkey, gateways, nginx, client, watch;
# and the signals that stop them (asyncio's cancellation differs between Pythons).
E2E_TESTS=(
  tests/integration/test_gateway_e2e.py tests/integration/test_client_gateway.py
  tests/integration/test_topology.py tests/integration/test_watch.py tests/integration/test_signals.py
  tests/integration/test_gateway_video.py
)
