//! ringwire-io (under construction).
