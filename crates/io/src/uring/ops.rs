//! What each io_uring operation of the loop is called: the `user_data` of its SQE (op kind,
//! connection slot and generation), and the socket it names. What an operation may point at,
//! and for how long, is [`super::lent`]'s.

pub(super) const KIND_ACCEPT: u64 = 1;
pub(super) const KIND_RECV: u64 = 2;
pub(super) const KIND_SEND: u64 = 3;
pub(super) const KIND_CONNECT: u64 = 4;
pub(super) const KIND_CANCEL: u64 = 5;
pub(super) const KIND_CLOSE: u64 = 6;
pub(super) const KIND_WAKE: u64 = 7;
pub(super) const KIND_LISTENER_CANCEL: u64 = 8;
pub(super) const KIND_NOP: u64 = 9;
pub(super) const KIND_RECV_INTO: u64 = 10;

/// The generation bits carried in user_data.
pub(super) const GEN_MASK: u32 = 0x00FF_FFFF;

/// user_data: op kind (8 bits) | generation (24 bits) | slot index (32 bits).
pub(super) fn user_data(kind: u64, idx: u32, generation: u32) -> u64 {
    (kind << 56) | (u64::from(generation & GEN_MASK) << 32) | u64::from(idx)
}

/// The (kind, generation, slot index) of a user_data.
pub(super) fn split_user_data(ud: u64) -> (u64, u32, u32) {
    (ud >> 56, ((ud >> 32) as u32) & GEN_MASK, ud as u32)
}

/// [`UConn::slot`](super::conn::UConn::slot) of a connection without a registered file.
pub(super) const NO_SLOT: u32 = u32::MAX;

/// Evaluates `$e` with `$t` naming a connection's socket: its registered file `$slot` when it
/// has one (not [`NO_SLOT`]), its descriptor `$fd` otherwise (the opcodes take either, as
/// different types).
macro_rules! on_socket {
    ($slot:expr, $fd:expr, $t:ident => $e:expr) => {
        if $slot != $crate::uring::ops::NO_SLOT {
            let $t = ::io_uring::types::Fixed($slot);
            $e
        } else {
            let $t = ::io_uring::types::Fd($fd);
            $e
        }
    };
}
