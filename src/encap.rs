//! Tunnel encapsulation (in progress).
