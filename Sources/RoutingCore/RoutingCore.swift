// Module RoutingCore.
