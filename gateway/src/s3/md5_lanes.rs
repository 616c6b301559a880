//! MD5 of many uploads at once.
//!
//! An object's ETag is the MD5 of its bytes: a serial chain of 64-byte blocks that one core runs
//! at about 600 MiB/s, which made it the largest single cost of a large PUT and a ceiling on the
//! gateway's PUT throughput. But a gateway serves several uploads at once, and a vector register
//! holds several 32-bit lanes (sixteen in AVX-512, eight in AVX2): one hashing thread advances that
//! many uploads' MD5s together, one block of each per step.
//!
//! An upload is hashed inline until it passes `INLINE_BYTES` (for a small body the trip to the
//! thread costs more than it saves); then its state moves to the thread, and its chunks are queued
//! there (shared, not copied). At most `MAX_QUEUED` bytes wait per upload: beyond that its reader
//! waits, so memory per request stays bounded. Without AVX2 every upload is hashed inline.
//!
//! A step of the lanes costs about the same however many are busy, so the thread is in no hurry:
//! it waits until enough uploads have bytes ready to fill the lanes, or until someone waits for
//! one of them (its reader, held at `MAX_QUEUED`, or its `finish`), or until one has waited
//! `LINGER`. The write path asks for the MD5 only once the holders have the fragments (unless the
//! client sent a Content-MD5, which is compared before they get the last stripe), so the bytes of
//! the uploads in flight gather meanwhile. A batch of one upload is hashed with the scalar code,
//! one of at most eight in AVX2 where that was timed faster than AVX-512 on this CPU. Under eight
//! 1 MiB PUTs a batch held 2.4 uploads on average when the thread hashed whatever was ready, and
//! 3.6 this way.
//!
//! The lanes need x86-64; elsewhere `Md5Stream` hashes inline with the `md-5` crate.

#[cfg(target_arch = "x86_64")]
pub use lanes::Md5Stream;
#[cfg(not(target_arch = "x86_64"))]
pub use portable::Md5Stream;

#[cfg(target_arch = "x86_64")]
mod lanes {
    use bytes::{Buf, Bytes};
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Condvar, Mutex, OnceLock};
    use std::time::{Duration, Instant};
    use tokio::sync::Notify;

    /// Uploads are hashed inline up to this many bytes.
    const INLINE_BYTES: u64 = 256 << 10;
    /// Bytes an upload may have waiting for the hashing thread.
    const MAX_QUEUED: usize = 4 << 20;
    /// An upload goes to the hashing thread once it has this many bytes waiting (or is finishing),
    /// and the thread takes about this many from each upload per batch: lanes with work of the same
    /// size stay busy together, instead of one lane running on while the others idle.
    const BATCH_BYTES: usize = 256 << 10;
    /// How long an upload's bytes may wait for others to hash with, unless its reader or its
    /// `finish` waits for them: a batch costs about the same for one upload as for all lanes.
    const LINGER: Duration = Duration::from_millis(10);

    /// The MD5 of bytes fed in pieces of any length.
    #[derive(Clone)]
    struct State {
        words: [u32; 4],
        /// The start of an unfinished block.
        partial: [u8; 64],
        partial_len: usize,
        len: u64,
    }

    impl State {
        fn new() -> State {
            State {
                words: [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476],
                partial: [0; 64],
                partial_len: 0,
                len: 0,
            }
        }

        fn update(&mut self, mut data: &[u8]) {
            self.len += data.len() as u64;
            if self.partial_len > 0 {
                let n = (64 - self.partial_len).min(data.len());
                self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&data[..n]);
                self.partial_len += n;
                data = &data[n..];
                if self.partial_len < 64 {
                    return;
                }
                md5_asm::compress(&mut self.words, &[self.partial]);
                self.partial_len = 0;
            }
            let (blocks, rest) = data.as_chunks::<64>();
            md5_asm::compress(&mut self.words, blocks);
            self.partial[..rest.len()].copy_from_slice(rest);
            self.partial_len = rest.len();
        }

        fn finish(mut self) -> [u8; 16] {
            let bits = self.len.wrapping_mul(8);
            let pad = if self.partial_len < 56 { 56 } else { 120 } - self.partial_len;
            let mut tail = [0u8; 72];
            tail[0] = 0x80;
            tail[pad..pad + 8].copy_from_slice(&bits.to_le_bytes());
            self.update(&tail[..pad + 8]);
            let mut out = [0u8; 16];
            for (bytes, word) in out.chunks_exact_mut(4).zip(self.words) {
                bytes.copy_from_slice(&word.to_le_bytes());
            }
            out
        }
    }

    /// One upload's MD5 once the hashing thread does it.
    struct Upload {
        queued: Mutex<Queued>,
        /// Told whenever the thread has taken this upload's queued bytes.
        drained: Notify,
        /// Its reader or its `finish` waits for the thread (read under the queue's lock).
        waited: AtomicBool,
    }

    struct Queued {
        md5: State,
        chunks: VecDeque<Bytes>,
        /// Bytes queued or being hashed.
        bytes: usize,
        /// In the thread's queue, or being hashed.
        busy: bool,
        /// No more bytes will come: every queued byte is to be hashed, however few.
        finishing: bool,
    }

    /// The hashing thread's queue of uploads with bytes to hash, each with when it joined.
    struct Lanes {
        kernel: Kernel,
        ready: Mutex<VecDeque<(Arc<Upload>, Instant)>>,
        wake: Condvar,
    }

    /// The hashing thread, started on first use; `None` where the CPU has no kernel.
    fn lanes() -> Option<&'static Lanes> {
        static LANES_THREAD: OnceLock<Option<&'static Lanes>> = OnceLock::new();
        *LANES_THREAD.get_or_init(|| {
            let lanes: &'static Lanes = Box::leak(Box::new(Lanes {
                kernel: Kernel::detect()?,
                ready: Mutex::default(),
                wake: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("md5-lanes".into())
                .spawn(move || lanes.run())
                .ok()?;
            Some(lanes)
        })
    }

    impl Lanes {
        fn submit(&self, upload: Arc<Upload>) {
            let mut ready = self.ready.lock().expect("md5 queue lock");
            ready.push_back((upload, Instant::now()));
            self.wake.notify_one();
        }

        /// Tells the thread that an upload is now waited for.
        fn nudge(&self) {
            let _ready = self.ready.lock().expect("md5 queue lock");
            self.wake.notify_one();
        }

        /// The next uploads to hash together: as many as fill `full` lanes, or fewer once one of
        /// them is waited for or has lingered `LINGER`. The waited-for go first, then the rest in
        /// the order they came, up to the kernel's width.
        fn next_batch(&self, full: usize) -> Vec<Arc<Upload>> {
            let mut ready = self.ready.lock().expect("md5 queue lock");
            loop {
                let now = Instant::now();
                let due = ready.front().map(|(_, since)| *since + LINGER);
                if ready.len() >= full
                    || due.is_some_and(|due| due <= now)
                    || ready.iter().any(|(upload, _)| upload.waited())
                {
                    break;
                }
                ready = match due {
                    Some(due) => {
                        let wait = self.wake.wait_timeout(ready, due - now);
                        wait.expect("md5 queue lock").0
                    }
                    None => self.wake.wait(ready).expect("md5 queue lock"),
                };
            }
            let width = self.kernel.lanes();
            let mut batch = Vec::with_capacity(width);
            ready.retain(|(upload, _)| {
                let take = batch.len() < width && upload.waited();
                if take {
                    batch.push(upload.clone());
                }
                !take
            });
            while batch.len() < width {
                let Some((upload, _)) = ready.pop_front() else {
                    break;
                };
                batch.push(upload);
            }
            batch
        }

        fn run(&self) {
            // Timed here rather than where the thread is set up: that is an upload's task, on a
            // runtime thread.
            let narrow = self.kernel.faster_narrower();
            let full = narrow.unwrap_or(self.kernel).lanes();
            loop {
                let batch = self.next_batch(full);
                let mut work: Vec<Work> = batch
                    .iter()
                    .map(|upload| {
                        let mut q = upload.queued.lock().expect("md5 upload lock");
                        let mut chunks = VecDeque::new();
                        let mut taken = 0;
                        while taken < BATCH_BYTES {
                            let Some(chunk) = q.chunks.pop_front() else {
                                break;
                            };
                            taken += chunk.len();
                            chunks.push_back(chunk);
                        }
                        Work::new(q.md5.clone(), chunks)
                    })
                    .collect();
                if let [alone] = &mut work[..] {
                    // A vector step costs more than a scalar block (about one and a half with
                    // AVX-512, two with AVX2): with one lane busy, the scalar code is faster.
                    alone.hash_scalar();
                } else {
                    let kernel = match narrow {
                        Some(narrow) if work.len() <= narrow.lanes() => narrow,
                        _ => self.kernel,
                    };
                    kernel.hash(&mut work);
                }
                for (upload, done) in batch.into_iter().zip(work) {
                    let mut q = upload.queued.lock().expect("md5 upload lock");
                    q.md5 = done.md5;
                    q.bytes -= done.taken;
                    q.busy = false;
                    // A finishing upload waits for every byte: it comes back however few are left.
                    let min_bytes = if q.finishing { 1 } else { BATCH_BYTES };
                    upload.submit_from(&mut q, self, min_bytes);
                    drop(q);
                    upload.drained.notify_waiters();
                }
            }
        }
    }

    /// One upload's share of a batch: its state, and the chunks to hash into it.
    struct Work {
        md5: State,
        chunks: VecDeque<Bytes>,
        /// Bytes in `chunks` not yet hashed.
        left: usize,
        /// Bytes taken from the upload's queue.
        taken: usize,
        /// Bytes of the front chunk hashed in place (see `next_block`).
        at: usize,
    }

    impl Work {
        fn new(md5: State, chunks: VecDeque<Bytes>) -> Work {
            let left = chunks.iter().map(Bytes::len).sum();
            Work {
                md5,
                chunks,
                left,
                taken: left,
                at: 0,
            }
        }

        /// The next whole block of the chunks (after the state's unfinished one): where it lies
        /// whole in the front chunk, a pointer to it there, so that the kernel loads it in place;
        /// otherwise gathered into `row`. `None` when fewer than 64 bytes are left, which then
        /// become the unfinished block. A block in place stays valid until the next call: its
        /// chunk is dropped no sooner.
        #[inline]
        fn next_block(&mut self, row: &mut [u8; 64]) -> Option<*const u8> {
            if self.md5.partial_len == 0 {
                if let Some(front) = self.chunks.front().filter(|f| f.len() - self.at >= 64) {
                    let block = front[self.at..].as_ptr();
                    self.at += 64;
                    self.left -= 64;
                    return Some(block);
                }
            }
            self.settle();
            let md5 = &mut self.md5;
            if md5.partial_len + self.left < 64 {
                for chunk in self.chunks.drain(..) {
                    let end = md5.partial_len + chunk.len();
                    md5.partial[md5.partial_len..end].copy_from_slice(&chunk);
                    md5.partial_len = end;
                }
                self.left = 0;
                return None;
            }
            let mut filled = md5.partial_len;
            row[..filled].copy_from_slice(&md5.partial[..filled]);
            md5.partial_len = 0;
            while filled < 64 {
                let Some(front) = self.chunks.front_mut() else {
                    break;
                };
                let n = (64 - filled).min(front.len());
                row[filled..filled + n].copy_from_slice(&front[..n]);
                front.advance(n);
                filled += n;
                self.left -= n;
                if front.is_empty() {
                    self.chunks.pop_front();
                }
            }
            Some(row.as_ptr())
        }

        /// Drops from the front chunk the blocks hashed in place (`at`), and the chunk once it
        /// is all hashed.
        fn settle(&mut self) {
            if let Some(front) = self.chunks.front_mut().filter(|_| self.at > 0) {
                front.advance(self.at);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
            }
            self.at = 0;
        }

        fn hash_scalar(&mut self) {
            self.settle();
            for chunk in self.chunks.drain(..) {
                self.md5.update(&chunk);
            }
            self.left = 0;
        }
    }

    /// A vector implementation of MD5's steps. A value exists only where the CPU has its
    /// instructions (`detect`), which is what makes `hash` safe to call.
    #[derive(Clone, Copy)]
    enum Kernel {
        Avx512,
        Avx2,
    }

    impl Kernel {
        /// The widest kernel this CPU runs.
        fn detect() -> Option<Kernel> {
            if std::arch::is_x86_feature_detected!("avx512f") {
                Some(Kernel::Avx512)
            } else if std::arch::is_x86_feature_detected!("avx2") {
                Some(Kernel::Avx2)
            } else {
                None
            }
        }

        /// A narrower kernel that hashes a batch it can hold faster than `self` does, timed on
        /// this CPU (under a millisecond, once, as the thread starts). On the AMD EPYC (Zen 4)
        /// cores of the project's machine, which run AVX-512 in two halves, eight uploads of
        /// 16 KiB took 45 µs in AVX-512 and 36 µs in AVX2; cores with full-width AVX-512 units
        /// may differ, since its instructions also take fewer steps per round.
        fn faster_narrower(self) -> Option<Kernel> {
            let narrow = match self {
                Kernel::Avx512 if std::arch::is_x86_feature_detected!("avx2") => Kernel::Avx2,
                _ => return None,
            };
            let chunk = Bytes::from(vec![0x5a; 16 << 10]);
            let time = |kernel: Kernel| {
                let mut work: Vec<Work> = (0..narrow.lanes())
                    .map(|_| Work::new(State::new(), VecDeque::from([chunk.clone()])))
                    .collect();
                let start = Instant::now();
                kernel.hash(&mut work);
                start.elapsed()
            };
            // The fastest of several rounds each: a round that another thread interrupted says
            // nothing about the kernel.
            let (mut wide, mut narrower) = (Duration::MAX, Duration::MAX);
            for _ in 0..8 {
                wide = wide.min(time(self));
                narrower = narrower.min(time(narrow));
            }
            tracing::debug!(
                ?wide,
                ?narrower,
                "md5 lanes: a half-full batch timed in each kernel"
            );
            (narrower < wide).then_some(narrow)
        }

        /// Uploads hashed together.
        fn lanes(self) -> usize {
            match self {
                Kernel::Avx512 => 16,
                Kernel::Avx2 => 8,
            }
        }

        /// Hashes every whole block of each upload's chunks into its state (up to `lanes()`
        /// uploads); the bytes after the last whole block become the state's unfinished block.
        fn hash(self, work: &mut [Work]) {
            assert!(work.len() <= self.lanes());
            match self {
                // SAFETY: the value exists only where `detect` found AVX-512F.
                Kernel::Avx512 => unsafe { avx512::hash(work) },
                // SAFETY: the value exists only where `detect` found AVX2.
                Kernel::Avx2 => unsafe { avx2::hash(work) },
            }
        }
    }

    /// The uploads' states as the kernels hold them, word-major: `words[i][lane]` is word i of
    /// that lane's state. Counts the bytes about to be hashed into each upload's length.
    fn load_states<const N: usize>(work: &mut [Work]) -> [[u32; N]; 4] {
        let mut words = [[0u32; N]; 4];
        for (lane, w) in work.iter_mut().enumerate() {
            for (word, value) in words.iter_mut().zip(w.md5.words) {
                word[lane] = value;
            }
            w.md5.len += w.left as u64;
        }
        words
    }

    /// Puts the kernels' words back into the uploads' states.
    fn store_states<const N: usize>(work: &mut [Work], words: [[u32; N]; 4]) {
        for (lane, w) in work.iter_mut().enumerate() {
            for (i, word) in words.iter().enumerate() {
                w.md5.words[i] = word[lane];
            }
        }
    }

    /// Points `blocks[lane]` at each upload's next whole block (in place, or gathered into its
    /// row: see `Work::next_block`), and the lanes without one at their row; returns a bit per
    /// lane that had one. Every pointer is to 64 readable bytes until the next call.
    fn next_blocks<const N: usize>(
        work: &mut [Work],
        rows: &mut [[u8; 64]; N],
        blocks: &mut [*const u8; N],
    ) -> u32 {
        let mut active = 0;
        for (lane, (row, block)) in rows.iter_mut().zip(blocks.iter_mut()).enumerate() {
            *block = match work.get_mut(lane).and_then(|w| w.next_block(row)) {
                Some(next) => {
                    active |= 1 << lane;
                    next
                }
                None => row.as_ptr(),
            };
        }
        active
    }

    /// Per-step additive constants (RFC 1321).
    const K: [u32; 64] = [
        0xd76a_a478,
        0xe8c7_b756,
        0x2420_70db,
        0xc1bd_ceee,
        0xf57c_0faf,
        0x4787_c62a,
        0xa830_4613,
        0xfd46_9501,
        0x6980_98d8,
        0x8b44_f7af,
        0xffff_5bb1,
        0x895c_d7be,
        0x6b90_1122,
        0xfd98_7193,
        0xa679_438e,
        0x49b4_0821,
        0xf61e_2562,
        0xc040_b340,
        0x265e_5a51,
        0xe9b6_c7aa,
        0xd62f_105d,
        0x0244_1453,
        0xd8a1_e681,
        0xe7d3_fbc8,
        0x21e1_cde6,
        0xc337_07d6,
        0xf4d5_0d87,
        0x455a_14ed,
        0xa9e3_e905,
        0xfcef_a3f8,
        0x676f_02d9,
        0x8d2a_4c8a,
        0xfffa_3942,
        0x8771_f681,
        0x6d9d_6122,
        0xfde5_380c,
        0xa4be_ea44,
        0x4bde_cfa9,
        0xf6bb_4b60,
        0xbebf_bc70,
        0x289b_7ec6,
        0xeaa1_27fa,
        0xd4ef_3085,
        0x0488_1d05,
        0xd9d4_d039,
        0xe6db_99e5,
        0x1fa2_7cf8,
        0xc4ac_5665,
        0xf429_2244,
        0x432a_ff97,
        0xab94_23a7,
        0xfc93_a039,
        0x655b_59c3,
        0x8f0c_cc92,
        0xffef_f47d,
        0x8584_5dd1,
        0x6fa8_7e4f,
        0xfe2c_e6e0,
        0xa301_4314,
        0x4e08_11a1,
        0xf753_7e82,
        0xbd3a_f235,
        0x2ad7_d2bb,
        0xeb86_d391,
    ];

    /// Per-step left rotations, four per round.
    const S: [[u32; 4]; 4] = [
        [7, 12, 17, 22],
        [5, 9, 14, 20],
        [4, 11, 16, 23],
        [6, 10, 15, 21],
    ];

    /// The MD5 of an upload's bytes, fed as they arrive.
    pub struct Md5Stream(Hashing);

    enum Hashing {
        /// Hashed here, as the bytes arrive.
        Inline(State),
        /// Hashed by the lanes' thread.
        Lanes(Arc<Upload>, &'static Lanes),
    }

    impl Default for Md5Stream {
        fn default() -> Self {
            Md5Stream(Hashing::Inline(State::new()))
        }
    }

    impl Md5Stream {
        pub async fn update(&mut self, chunk: &Bytes) {
            if let Hashing::Inline(state) = &mut self.0 {
                let Some(lanes) = lanes().filter(|_| state.len + chunk.len() as u64 > INLINE_BYTES)
                else {
                    state.update(chunk);
                    return;
                };
                self.0 = Hashing::Lanes(Upload::new(state.clone()), lanes);
            }
            let Hashing::Lanes(upload, lanes) = &self.0 else {
                unreachable!("an inline stream returned above or moved to the lanes");
            };
            {
                let mut q = upload.queued.lock().expect("md5 upload lock");
                q.chunks.push_back(chunk.clone());
                q.bytes += chunk.len();
                upload.submit_from(&mut q, lanes, BATCH_BYTES);
            }
            upload.wait_until(lanes, |q| q.bytes <= MAX_QUEUED).await;
        }

        pub async fn finish(self) -> [u8; 16] {
            match self.0 {
                Hashing::Inline(state) => state.finish(),
                Hashing::Lanes(upload, lanes) => {
                    {
                        let mut q = upload.queued.lock().expect("md5 upload lock");
                        q.finishing = true;
                        upload.submit_from(&mut q, lanes, 1);
                    }
                    upload
                        .wait_until(lanes, |q| !q.busy && q.bytes == 0)
                        .await
                        .finish()
                }
            }
        }
    }

    impl Upload {
        fn new(md5: State) -> Arc<Upload> {
            Arc::new(Upload {
                queued: Mutex::new(Queued {
                    md5,
                    chunks: VecDeque::new(),
                    bytes: 0,
                    busy: false,
                    finishing: false,
                }),
                drained: Notify::new(),
                waited: AtomicBool::new(false),
            })
        }

        /// Hands the upload to the hashing thread if it is not there already and has at least
        /// `min_bytes` waiting.
        fn submit_from(self: &Arc<Self>, q: &mut Queued, lanes: &Lanes, min_bytes: usize) {
            if !q.busy && q.bytes >= min_bytes {
                q.busy = true;
                lanes.submit(self.clone());
            }
        }

        /// Waits until the hashing thread has brought the queue to `done`; returns the state then.
        fn waited(&self) -> bool {
            self.waited.load(Ordering::Relaxed)
        }

        /// Waits for `done`, telling the thread that this upload is waited for meanwhile.
        async fn wait_until(&self, lanes: &Lanes, done: impl Fn(&Queued) -> bool) -> State {
            loop {
                // Created before the check, so that a notification between the two is not lost.
                let drained = self.drained.notified();
                {
                    let q = self.queued.lock().expect("md5 upload lock");
                    if done(&q) {
                        self.waited.store(false, Ordering::Relaxed);
                        return q.md5.clone();
                    }
                }
                if !self.waited.swap(true, Ordering::Relaxed) {
                    lanes.nudge();
                }
                drained.await;
            }
        }
    }

    /// Sixteen MD5s in the lanes of AVX-512 registers.
    mod avx512 {
        use super::{Work, K, S};
        use std::arch::x86_64::*;

        /// `Kernel::hash` for sixteen lanes.
        ///
        /// # Safety
        /// The CPU must support AVX-512F.
        #[target_feature(enable = "avx512f")]
        pub unsafe fn hash(work: &mut [Work]) {
            let [mut a, mut b, mut c, mut d] = super::load_states::<16>(work).map(vector);
            let mut gathered = [[0u8; 64]; 16];
            let mut blocks = [std::ptr::null(); 16];
            loop {
                let active = super::next_blocks(work, &mut gathered, &mut blocks) as __mmask16;
                if active == 0 {
                    break;
                }
                let mut rows = [_mm512_setzero_si512(); 16];
                for (row, block) in rows.iter_mut().zip(blocks) {
                    // SAFETY: `next_blocks` points every lane at 64 readable bytes.
                    *row = _mm512_loadu_si512(block.cast());
                }
                let m = transpose(rows);
                let (na, nb, nc, nd) = rounds(a, b, c, d, &m);
                a = _mm512_mask_add_epi32(a, active, a, na);
                b = _mm512_mask_add_epi32(b, active, b, nb);
                c = _mm512_mask_add_epi32(c, active, c, nc);
                d = _mm512_mask_add_epi32(d, active, d, nd);
            }
            super::store_states(work, [a, b, c, d].map(lanes_of));
        }

        /// Rows of sixteen 32-bit words become columns: row i of the result holds word i of every
        /// row, so that each step of the rounds adds one vector of message words, one per lane.
        ///
        /// Four stages; the stage of half-size h swaps, in every 2h x 2h block, the top-right and
        /// bottom-left h x h blocks (transposing [[A, B], [C, D]] is [[A', C'], [B', D']]).
        #[target_feature(enable = "avx512f")]
        unsafe fn transpose(mut rows: [__m512i; 16]) -> [__m512i; 16] {
            // Unrolled: the rows stay in registers.
            // Stage n pairs each listed upper row i with row i + (8 >> n).
            macro_rules! stage {
                ($n:literal: $($i:literal)*) => {{
                    let (upper, lower) = STAGES[$n];
                    let (upper, lower) = (vector(upper), vector(lower));
                    $(
                        let (top, bottom) = (rows[$i], rows[$i + (8 >> $n)]);
                        rows[$i] = _mm512_permutex2var_epi32(top, upper, bottom);
                        rows[$i + (8 >> $n)] = _mm512_permutex2var_epi32(top, lower, bottom);
                    )*
                }};
            }
            stage!(0: 0 1 2 3 4 5 6 7);
            stage!(1: 0 1 2 3 8 9 10 11);
            stage!(2: 0 1 4 5 8 9 12 13);
            stage!(3: 0 2 4 6 8 10 12 14);
            rows
        }

        /// The permutations of the transpose's stages of half-size 8, 4, 2 and 1: the first gives
        /// the upper row of a pair, the second the lower (index 16 + j picks word j of the lower
        /// row).
        const STAGES: [([u32; 16], [u32; 16]); 4] = [stage(8), stage(4), stage(2), stage(1)];

        const fn stage(h: usize) -> ([u32; 16], [u32; 16]) {
            let (mut upper, mut lower) = ([0u32; 16], [0u32; 16]);
            let mut c = 0;
            while c < 16 {
                (upper[c], lower[c]) = if c & h == 0 {
                    (c as u32, (c + h) as u32)
                } else {
                    ((16 + c - h) as u32, (16 + c) as u32)
                };
                c += 1;
            }
            (upper, lower)
        }

        fn vector(words: [u32; 16]) -> __m512i {
            // SAFETY: both are 64 plain bytes.
            unsafe { std::mem::transmute(words) }
        }

        fn lanes_of(v: __m512i) -> [u32; 16] {
            // SAFETY: both are 64 plain bytes.
            unsafe { std::mem::transmute(v) }
        }

        /// The 64 steps of one block in every lane; returns the words to add to the state.
        #[target_feature(enable = "avx512f")]
        unsafe fn rounds(
            mut a: __m512i,
            mut b: __m512i,
            mut c: __m512i,
            mut d: __m512i,
            m: &[__m512i; 16],
        ) -> (__m512i, __m512i, __m512i, __m512i) {
            // Unrolled by the macros, so that the constants, rotations and message rows are
            // immediates and the a-b-c-d shuffle is register renaming; a loop kept them in memory.
            macro_rules! round {
                ($table:literal, ($x:ident, $y:ident, $z:ident), $g:expr, [$($i:literal)*]) => {$({
                    let k = _mm512_set1_epi32(K[$i] as i32);
                    // a + K + M does not wait for the previous step; F does, so it comes last.
                    let ahead = _mm512_add_epi32(a, _mm512_add_epi32(k, m[$g($i)]));
                    let f = _mm512_ternarylogic_epi32::<$table>($x, $y, $z);
                    let t = _mm512_add_epi32(ahead, f);
                    let rotated = _mm512_rol_epi32::<{ S[$i / 16][$i % 4] as i32 }>(t);
                    a = d;
                    d = c;
                    c = b;
                    b = _mm512_add_epi32(b, rotated);
                })*};
            }
            // F = b ? c : d; G = d ? b : c; H = b ^ c ^ d; I = c ^ (b | !d), as ternary-logic tables.
            round!(0xCA, (b, c, d), |i: usize| i, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
            round!(0xCA, (d, b, c), |i: usize| (5 * i + 1) % 16,
                [16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31]);
            round!(0x96, (b, c, d), |i: usize| (3 * i + 5) % 16,
                [32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47]);
            round!(0x39, (b, c, d), |i: usize| (7 * i) % 16,
                [48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63]);
            (a, b, c, d)
        }
    }

    /// Eight MD5s in the lanes of AVX2 registers, for CPUs without AVX-512: half the lanes, and
    /// a step takes more instructions (AVX2 has no rotate and no ternary logic).
    mod avx2 {
        use super::{Work, K, S};
        use std::arch::x86_64::*;

        /// `Kernel::hash` for eight lanes.
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        pub unsafe fn hash(work: &mut [Work]) {
            let [mut a, mut b, mut c, mut d] = super::load_states::<8>(work).map(vector);
            let mut gathered = [[0u8; 64]; 8];
            let mut blocks = [std::ptr::null(); 8];
            loop {
                let active = super::next_blocks(work, &mut gathered, &mut blocks);
                if active == 0 {
                    break;
                }
                let mask = vector(std::array::from_fn(|lane| {
                    if active >> lane & 1 == 1 {
                        u32::MAX
                    } else {
                        0
                    }
                }));
                let m = transpose(&blocks);
                let (na, nb, nc, nd) = rounds(a, b, c, d, &m);
                a = _mm256_add_epi32(a, _mm256_and_si256(na, mask));
                b = _mm256_add_epi32(b, _mm256_and_si256(nb, mask));
                c = _mm256_add_epi32(c, _mm256_and_si256(nc, mask));
                d = _mm256_add_epi32(d, _mm256_and_si256(nd, mask));
            }
            super::store_states(work, [a, b, c, d].map(lanes_of));
        }

        /// The message words of every lane's block (`blocks[lane]`, 64 readable bytes),
        /// word-major: `m[j]` holds word j of each block. Each half of the blocks (words 0-7, then
        /// 8-15) is an 8 x 8 transpose.
        #[target_feature(enable = "avx2")]
        unsafe fn transpose(blocks: &[*const u8; 8]) -> [__m256i; 16] {
            let mut m = [_mm256_setzero_si256(); 16];
            for half in 0..2 {
                let mut r = [_mm256_setzero_si256(); 8];
                for (row, block) in r.iter_mut().zip(blocks) {
                    // SAFETY: each block is 64 readable bytes; a half is one vector.
                    *row = _mm256_loadu_si256(block.add(32 * half).cast());
                }
                // Pairs of rows interleaved by words, then by pairs of words: t and u hold, in
                // each 128-bit half, one word of four rows; the last step joins the halves.
                let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
                let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
                let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
                let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
                let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
                let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
                let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
                let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
                let u = [
                    _mm256_unpacklo_epi64(t0, t2),
                    _mm256_unpackhi_epi64(t0, t2),
                    _mm256_unpacklo_epi64(t1, t3),
                    _mm256_unpackhi_epi64(t1, t3),
                    _mm256_unpacklo_epi64(t4, t6),
                    _mm256_unpackhi_epi64(t4, t6),
                    _mm256_unpacklo_epi64(t5, t7),
                    _mm256_unpackhi_epi64(t5, t7),
                ];
                // u[j] (rows 0-3) and u[j + 4] (rows 4-7) hold words j and j + 4.
                let words = &mut m[8 * half..8 * half + 8];
                for j in 0..4 {
                    words[j] = _mm256_permute2x128_si256::<0x20>(u[j], u[j + 4]);
                    words[j + 4] = _mm256_permute2x128_si256::<0x31>(u[j], u[j + 4]);
                }
            }
            m
        }

        fn vector(words: [u32; 8]) -> __m256i {
            // SAFETY: both are 32 plain bytes.
            unsafe { std::mem::transmute(words) }
        }

        fn lanes_of(v: __m256i) -> [u32; 8] {
            // SAFETY: both are 32 plain bytes.
            unsafe { std::mem::transmute(v) }
        }

        /// F = b ? c : d, as d ^ (b & (c ^ d)).
        #[inline]
        #[target_feature(enable = "avx2")]
        fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
        }

        /// G = d ? b : c, as c ^ (d & (b ^ c)).
        #[inline]
        #[target_feature(enable = "avx2")]
        fn g(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
        }

        /// H = b ^ c ^ d.
        #[inline]
        #[target_feature(enable = "avx2")]
        fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            _mm256_xor_si256(b, _mm256_xor_si256(c, d))
        }

        /// I = c ^ (b | !d).
        #[inline]
        #[target_feature(enable = "avx2")]
        fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
            let not_d = _mm256_xor_si256(d, _mm256_set1_epi32(-1));
            _mm256_xor_si256(c, _mm256_or_si256(b, not_d))
        }

        /// The 64 steps of one block in every lane; returns the words to add to the state.
        #[target_feature(enable = "avx2")]
        fn rounds(
            mut a: __m256i,
            mut b: __m256i,
            mut c: __m256i,
            mut d: __m256i,
            m: &[__m256i; 16],
        ) -> (__m256i, __m256i, __m256i, __m256i) {
            // Unrolled as in the AVX-512 kernel, so that constants and shifts are immediates.
            macro_rules! round {
                ($f:ident, $g:expr, [$($i:literal)*]) => {$({
                    let k = _mm256_set1_epi32(K[$i] as i32);
                    let ahead = _mm256_add_epi32(a, _mm256_add_epi32(k, m[$g($i)]));
                    let t = _mm256_add_epi32(ahead, $f(b, c, d));
                    let rotated = _mm256_or_si256(
                        _mm256_slli_epi32::<{ S[$i / 16][$i % 4] as i32 }>(t),
                        _mm256_srli_epi32::<{ 32 - S[$i / 16][$i % 4] as i32 }>(t),
                    );
                    a = d;
                    d = c;
                    c = b;
                    b = _mm256_add_epi32(b, rotated);
                })*};
            }
            round!(f, |step: usize| step, [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15]);
            round!(g, |step: usize| (5 * step + 1) % 16,
                [16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31]);
            round!(h, |step: usize| (3 * step + 5) % 16,
                [32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47]);
            round!(i, |step: usize| (7 * step) % 16,
                [48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63]);
            (a, b, c, d)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use md5::{Digest, Md5};

        /// Bytes that are the same for the same seed.
        fn data(len: usize, seed: u64) -> Vec<u8> {
            use rand::{Rng, SeedableRng};
            let mut bytes = vec![0; len];
            rand::rngs::StdRng::seed_from_u64(seed).fill(&mut bytes[..]);
            bytes
        }

        fn reference(bytes: &[u8]) -> [u8; 16] {
            Md5::digest(bytes).into()
        }

        #[test]
        fn inline_state_matches_md5_for_every_length_and_split() {
            for len in 0..300 {
                let bytes = data(len, len as u64);
                for split in [0, 1, 55, 56, 63, 64, 65, len / 2, len] {
                    let split = split.min(len);
                    let mut state = State::new();
                    state.update(&bytes[..split]);
                    state.update(&bytes[split..]);
                    assert_eq!(
                        state.finish(),
                        reference(&bytes),
                        "len {len}, split {split}"
                    );
                }
            }
        }

        #[test]
        fn every_kernel_matches_md5_with_uneven_uploads_and_chunks() {
            let kernels = [
                (
                    Kernel::Avx512,
                    std::arch::is_x86_feature_detected!("avx512f"),
                ),
                (Kernel::Avx2, std::arch::is_x86_feature_detected!("avx2")),
            ];
            // More uploads than lanes, of different lengths, each in chunks of odd sizes, and some
            // with a state already part-way (an unfinished block).
            let uploads: Vec<Vec<u8>> = (0..20)
                .map(|i| data(i * 997 + i * i * 61, i as u64 + 7))
                .collect();
            let on_this_cpu = kernels
                .into_iter()
                .filter_map(|(k, found)| found.then_some(k));
            for batch in on_this_cpu.flat_map(|k| uploads.chunks(k.lanes()).map(move |b| (k, b))) {
                let (kernel, batch) = batch;
                let mut work: Vec<Work> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, bytes)| {
                        let mut md5 = State::new();
                        let head = (i * 13).min(bytes.len());
                        md5.update(&bytes[..head]);
                        let chunks: VecDeque<Bytes> = bytes[head..]
                            .chunks(1 + i * 37)
                            .map(Bytes::copy_from_slice)
                            .collect();
                        Work::new(md5, chunks)
                    })
                    .collect();
                kernel.hash(&mut work);
                for (w, bytes) in work.into_iter().zip(batch) {
                    assert!(w.chunks.is_empty() && w.left == 0);
                    assert_eq!(w.md5.finish(), reference(bytes), "{} bytes", bytes.len());
                }
            }
        }

        #[test]
        fn a_batch_waits_for_full_lanes_a_waiter_or_the_linger() {
            let Some(kernel) = Kernel::detect() else {
                return;
            };
            let lanes = Lanes {
                kernel,
                ready: Mutex::default(),
                wake: Condvar::new(),
            };
            let uploads: Vec<Arc<Upload>> = (0..3).map(|_| Upload::new(State::new())).collect();
            let same = |batch: &[Arc<Upload>], want: &[usize]| {
                batch.len() == want.len()
                    && batch
                        .iter()
                        .zip(want)
                        .all(|(got, &i)| Arc::ptr_eq(got, &uploads[i]))
            };
            for upload in &uploads {
                lanes.submit(upload.clone());
            }
            // Enough to fill the lanes: in the order they came.
            assert!(same(&lanes.next_batch(3), &[0, 1, 2]));

            // Fewer, but one waited for: it goes first.
            for upload in &uploads {
                lanes.submit(upload.clone());
            }
            uploads[2].waited.store(true, Ordering::Relaxed);
            assert!(same(&lanes.next_batch(8), &[2, 0, 1]));
            uploads[2].waited.store(false, Ordering::Relaxed);

            // Too few to fill the lanes, and no one waiting: they linger first.
            lanes.submit(uploads[1].clone());
            let start = Instant::now();
            assert!(same(&lanes.next_batch(8), &[1]));
            assert!(start.elapsed() >= LINGER, "a lone upload did not linger");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_streams_match_md5() {
            let tasks: Vec<_> = (0..24)
                .map(|i| {
                    tokio::spawn(async move {
                        let bytes = Bytes::from(data(100_000 * (i % 7) + 3 * i, i as u64 + 1));
                        let mut stream = Md5Stream::default();
                        let mut at = 0;
                        while at < bytes.len() {
                            let end = (at + 16_384 + i * 11).min(bytes.len());
                            stream.update(&bytes.slice(at..end)).await;
                            at = end;
                        }
                        assert_eq!(stream.finish().await, reference(&bytes), "stream {i}");
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod portable {
    use bytes::Bytes;
    use md5::{Digest, Md5};

    /// The MD5 of an upload's bytes, fed as they arrive.
    #[derive(Default)]
    pub struct Md5Stream(Md5);

    impl Md5Stream {
        pub async fn update(&mut self, chunk: &Bytes) {
            self.0.update(chunk);
        }

        pub async fn finish(self) -> [u8; 16] {
            self.0.finalize().into()
        }
    }
}
