"""The Open Inference Protocol (KServe's v2, Triton's and MLServer's API) beside TF Serving's.

- :mod:`.tensors`: v2 datatypes <-> numpy, typed tensors in JSON and in the binary tensor
  extension, checked against a serving signature (no TensorFlow);
- :mod:`.rest`: the ``/v2/...`` HTTP routes on the server's aiohttp app;
- :mod:`.grpc`: ``inference.GRPCInferenceService`` on the server's gRPC port.
All three answer through ``ModelServer.run_signature``: the REST v1 path's batchers.
"""
