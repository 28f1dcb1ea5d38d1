//! The forwarding engine: one worker per TUN queue (in progress).
