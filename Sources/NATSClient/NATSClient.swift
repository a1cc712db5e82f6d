// Module NATSClient.
