"""The queue consumer: leases job messages, runs the counting pipeline, settles the job."""
