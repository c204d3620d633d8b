"""Google Cloud Pub/Sub as a source, in the roles python-pubsub's subscriber uses: the client,
the intake (unary pull or streaming pull), flow control, leases, and the dispatcher that owns
every outstanding message from its admission to its ack or nack."""
