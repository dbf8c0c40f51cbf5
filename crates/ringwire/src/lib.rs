//! ringwire-ringwire (under construction).
