//! ringwire-loadtest (under construction).
