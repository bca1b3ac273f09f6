//! Secrets in memory between uses. Every secret a running keyward holds is sealed
//! (AES-256-GCM) under a key that exists only while one secret is being used: it is
//! derived on each use by hashing a 4 KiB random pre-key, the design OpenSSH uses to
//! shield private keys, so an attacker who can read some of the process's memory
//! (a stale page, a side channel, a partial dump) must recover all 4 KiB (32,768
//! bits) without error before any secret opens.
//!
//! A plaintext exists only inside [`Sealed::with_secret`], in a per-thread scratch
//! buffer that is locked in RAM and zeroed before the call returns. The AES-GCM
//! cipher state (round keys and GHASH key) is zeroized on drop by the `aes-gcm`
//! crate's `zeroize` feature, and the stack below the call, where transient state of
//! the hash, cipher and signing code was, is overwritten on the way out.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut as _, Aes256Gcm, KeyInit as _, Nonce, Tag};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::{Zeroize as _, Zeroizing};

use crate::sys;

/// Compile-time proof that AES-GCM cipher state is zeroized on drop: this fails to
/// build if `aes-gcm` loses its `zeroize` feature (RustCrypto/AEADs issue 825 was the
/// gap before 0.11).
const _: fn() = zeroized_on_drop::<Aes256Gcm>;
fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}

/// Size of the random pre-key the shielding key is hashed from. Hashing it is most of
/// what a signature costs, so its size is a trade: OpenSSH's 16 KiB took 10 µs per
/// signed request here, a sixth of keyward's CPU per order. At 4 KiB an attacker
/// still needs 32,768 bits read without a single error (each guess at a doubtful bit
/// doubles the search, and each trial costs a hash of the whole pre-key), while a
/// signature pays a quarter of the hashing.
const PREKEY_BYTES: usize = 4 * 1024;
/// Largest secret that can be shielded (an RSA-8192 private key is about 4.8 KiB).
pub const MAX_SECRET_BYTES: usize = 16 * 1024;
/// Bytes of stack overwritten after each use of a secret.
const STACK_SCRUB_BYTES: usize = 32 * 1024;
const DOMAIN: &[u8] = b"keyward shield v1\0";

/// Page-aligned storage, so that locking and unlocking it never touches a page that
/// holds anything else.
#[repr(C, align(4096))]
struct Aligned<const N: usize>([u8; N]);

/// A buffer locked in RAM (when the system allows) and zeroed on drop.
struct LockedBuffer<const N: usize> {
    bytes: Box<Aligned<N>>,
    locked: bool,
}

impl<const N: usize> LockedBuffer<N> {
    fn new() -> Self {
        let bytes = Box::new(Aligned([0u8; N]));
        let locked = match sys::lock(&bytes.0) {
            Ok(()) => true,
            Err(error) => {
                warn_unlocked(&error);
                false
            }
        };
        Self { bytes, locked }
    }
}

impl<const N: usize> Drop for LockedBuffer<N> {
    fn drop(&mut self) {
        self.bytes.0.zeroize();
        if self.locked {
            sys::unlock(&self.bytes.0);
        }
    }
}

static MLOCK_WARNED: AtomicBool = AtomicBool::new(false);
static MLOCK_FAILED: AtomicBool = AtomicBool::new(false);

fn warn_unlocked(error: &std::io::Error) {
    MLOCK_FAILED.store(true, Ordering::Relaxed);
    if !MLOCK_WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %error,
            "cannot lock secret memory in RAM (mlock); secrets could reach swap. \
             Grant CAP_IPC_LOCK (containers: --cap-add IPC_LOCK) or raise RLIMIT_MEMLOCK, \
             or run without swap"
        );
    }
}

/// True if every secret buffer so far could be locked in RAM.
pub fn memory_locked() -> bool {
    !MLOCK_FAILED.load(Ordering::Relaxed)
}

/// Why shielding failed. Never carries secret bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShieldError {
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// The secret is larger than [`MAX_SECRET_BYTES`].
    #[error("secret too large to hold in memory (over {MAX_SECRET_BYTES} bytes)")]
    TooLarge,
    /// A sealed secret no longer authenticates: memory corruption.
    #[error("a secret held in memory failed its integrity check")]
    Corrupt,
}

struct Shield {
    prekey: LockedBuffer<PREKEY_BYTES>,
}

impl Shield {
    fn global() -> Result<&'static Self, ShieldError> {
        static SHIELD: OnceLock<Option<Shield>> = OnceLock::new();
        SHIELD
            .get_or_init(|| {
                let mut prekey = LockedBuffer::new();
                SystemRandom::new().fill(&mut prekey.bytes.0).ok()?;
                Some(Self { prekey })
            })
            .as_ref()
            .ok_or(ShieldError::Random)
    }

    /// The sealing cipher, built afresh for one use and zeroized when dropped.
    fn cipher(&self) -> Aes256Gcm {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(DOMAIN);
        context.update(&self.prekey.bytes.0);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(context.finish().as_ref());
        Aes256Gcm::new(<&aes_gcm::Key<Aes256Gcm>>::from(&*key))
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<LockedBuffer<MAX_SECRET_BYTES>>> = const { RefCell::new(None) };
}

/// A secret sealed under the process's shielding key. Not `Clone`, `Serialize` or
/// `Display`; `Debug` prints `[redacted]`.
pub struct Sealed {
    nonce: [u8; 12],
    tag: [u8; 16],
    ciphertext: Box<[u8]>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Sealed {
    /// Seals a copy of `plaintext`; the caller zeroizes its own copy.
    pub fn seal(plaintext: &[u8]) -> Result<Self, ShieldError> {
        if plaintext.len() > MAX_SECRET_BYTES {
            return Err(ShieldError::TooLarge);
        }
        let shield = Shield::global()?;
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ShieldError::Random)?;
        // Encrypting in place means the plaintext copy is overwritten by ciphertext in
        // the same memory, never left behind.
        let mut ciphertext: Box<[u8]> = plaintext.into();
        let tag = shield
            .cipher()
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                DOMAIN,
                InOutBuf::from(&mut ciphertext[..]),
            )
            .map_err(|_| ShieldError::TooLarge)?;
        scrub_stack();
        Ok(Self {
            nonce,
            tag: tag.into(),
            ciphertext,
        })
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.ciphertext.len()
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.ciphertext.is_empty()
    }

    /// Runs `use_secret` with the plaintext, which is zeroed as soon as it returns.
    /// The closure must not copy the bytes out.
    pub fn with_secret<R>(&self, use_secret: impl FnOnce(&[u8]) -> R) -> Result<R, ShieldError> {
        let result = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let scratch = slot.get_or_insert_with(LockedBuffer::new);
                self.open_into(&mut scratch.bytes.0, use_secret)
            }
            // A secret used while another is open on this thread gets its own buffer.
            Err(_) => {
                let mut own = LockedBuffer::<MAX_SECRET_BYTES>::new();
                self.open_into(&mut own.bytes.0, use_secret)
            }
        });
        scrub_stack();
        result
    }

    fn open_into<R>(
        &self,
        scratch: &mut [u8; MAX_SECRET_BYTES],
        use_secret: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, ShieldError> {
        let shield = Shield::global()?;
        let plain = scratch
            .get_mut(..self.ciphertext.len())
            .ok_or(ShieldError::TooLarge)?;
        plain.copy_from_slice(&self.ciphertext);
        let opened = shield.cipher().decrypt_inout_detached(
            &Nonce::from(self.nonce),
            DOMAIN,
            InOutBuf::from(&mut *plain),
            &Tag::from(self.tag),
        );
        if opened.is_err() {
            plain.zeroize();
            return Err(ShieldError::Corrupt);
        }
        let result = use_secret(plain);
        plain.zeroize();
        Ok(result)
    }
}

/// Overwrites the stack below the caller, where the frames of the functions it just
/// called (hashing, AES, HMAC and signature state) were.
#[inline(never)]
fn scrub_stack() {
    // A `let` binding: `&[0u8; N]` alone would be promoted to a static and write
    // nothing.
    let zeros = [0u8; STACK_SCRUB_BYTES];
    std::hint::black_box(&zeros);
}

/// `scrub_stack`, deeper: for after unlocking the vault, whose call chain (file
/// parsing, key derivation, key validation) runs deeper than one signature.
#[inline(never)]
pub fn scrub_stack_after_unlock() {
    let zeros = [0u8; 4 * STACK_SCRUB_BYTES];
    std::hint::black_box(&zeros);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_redacts() {
        let sealed = Sealed::seal(b"SECRETCANARY").unwrap();
        assert_eq!(sealed.len(), 12);
        assert!(!sealed.ciphertext.windows(12).any(|w| w == b"SECRETCANARY"));
        let seen = sealed.with_secret(<[u8]>::to_vec).unwrap();
        assert_eq!(seen, b"SECRETCANARY");
        assert_eq!(format!("{sealed:?}"), "[redacted]");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let a = Sealed::seal(b"same").unwrap();
        let b = Sealed::seal(b"same").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn nested_use_and_limits() {
        let outer = Sealed::seal(b"outer").unwrap();
        let inner = Sealed::seal(b"inner").unwrap();
        let both = outer
            .with_secret(|o| {
                let i = inner.with_secret(<[u8]>::to_vec).unwrap();
                [o.to_vec(), i].concat()
            })
            .unwrap();
        assert_eq!(both, b"outerinner");
        assert_eq!(
            Sealed::seal(&vec![0u8; MAX_SECRET_BYTES + 1]).unwrap_err(),
            ShieldError::TooLarge
        );
        assert!(Sealed::seal(&vec![7u8; MAX_SECRET_BYTES]).is_ok());
    }

    #[test]
    fn the_scratch_buffer_is_zero_after_use() {
        let sealed = Sealed::seal(b"SECRETCANARY").unwrap();
        sealed
            .with_secret(|s| assert_eq!(s, b"SECRETCANARY"))
            .unwrap();
        SCRATCH.with(|cell| {
            let slot = cell.borrow();
            let scratch = slot.as_ref().unwrap();
            assert!(scratch.bytes.0.iter().all(|&b| b == 0));
        });
    }

    #[test]
    fn tampering_is_detected() {
        let mut sealed = Sealed::seal(b"secret").unwrap();
        sealed.ciphertext[0] ^= 1;
        assert_eq!(
            sealed.with_secret(|_| ()).unwrap_err(),
            ShieldError::Corrupt
        );
    }
}
