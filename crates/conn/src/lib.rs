//! ringwire-conn (under construction).
