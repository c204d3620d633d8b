"""HTTP ingestion, the producer side of `lms api`: each protocol's decoder turns a request into
candidate logs, the edge checks them by the rules `lms mon` applies, and the publisher sends the
valid ones to Pub/Sub, answering 2xx only once Pub/Sub has confirmed them."""
