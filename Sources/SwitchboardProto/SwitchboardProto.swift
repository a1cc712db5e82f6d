// Module SwitchboardProto.
