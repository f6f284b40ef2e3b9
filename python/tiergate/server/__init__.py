"""Network front ends: the gRPC service (and the HTTP facade). Nothing below this package knows protobuf."""
