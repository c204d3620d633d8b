"""Where `lms mon` receives messages from; each source puts `Received` chunks on a bounded queue
and settles them through an acker once their batch is committed."""
