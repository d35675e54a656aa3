//! Zero-copy sending of cached media. hyper writes a body by handing the kernel a
//! pointer to it, and the kernel copies every byte into the socket: for a cached
//! segment that copy was a third of a request's CPU (nginx, with sendfile, skips it).
//!
//! Here a cached body can be a read-only mapping of a file: the stored object itself
//! (file storage), or a memory file (memfd) holding what came from S3. The socket
//! type `SendfileStream` recognises a write that points into such a mapping and sends
//! it with sendfile(2) from the file instead: the kernel then passes the pages on
//! rather than copying them. Every other write goes through unchanged. Linux only;
//! elsewhere bodies stay on the heap and nothing changes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Bodies smaller than this stay on the heap: a copy of a playlist costs less than
/// the lookup and the extra system call.
pub const MIN_FILE_BACKED: usize = 64 * 1024;

/// Writes shorter than this are not looked up: response heads and small bodies. The
/// rest of a file-backed body the socket took only part of is usually longer, and
/// still goes by sendfile.
const MIN_LOOKED_UP: usize = 4096;

/// Bytes sent with sendfile since the process started (also in /metrics).
pub fn bytes_sent_by_sendfile() -> u64 {
    crate::metrics::metrics().sendfile_bytes.get()
}

/// `data` in a memory file the socket can send without copying, or `data` itself
/// when it is small, on other systems, or when no file can be made (out of file
/// descriptors: the cache then works as before).
pub fn file_backed(data: Bytes) -> Bytes {
    #[cfg(target_os = "linux")]
    if data.len() >= MIN_FILE_BACKED {
        match linux::Mapping::memory_file(&data) {
            Ok(Some(file)) => return Bytes::from_owner(file),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "could not put a cached body in a memory file"),
        }
    }
    data
}

/// A stored file of `len` bytes, mapped so the socket sends it straight from the page
/// cache: no copy in memory, and no memory of ours until something reads it. The file
/// must never change in place (the file store renames finished objects into place).
/// None when it is small, on other systems, or when it cannot be mapped.
pub fn map_stored_file(path: &std::path::Path, len: u64) -> Option<Bytes> {
    #[cfg(target_os = "linux")]
    if len as usize >= MIN_FILE_BACKED {
        match linux::Mapping::stored_file(path, len as usize) {
            Ok(file) => return file.map(Bytes::from_owner),
            Err(e) => {
                tracing::debug!(error = %e, path = %path.display(), "could not map a stored file")
            }
        }
    }
    let _ = (path, len);
    None
}

/// Lets this process open as many files as its hard limit allows: each cached body
/// in a mapped file holds one descriptor, beside every client connection.
pub fn raise_open_file_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A TCP listener whose connections send mapped-file bodies with sendfile.
pub struct SendfileListener(TcpListener);

impl SendfileListener {
    pub fn new(listener: TcpListener) -> Self {
        SendfileListener(listener)
    }
}

impl axum::serve::Listener for SendfileListener {
    type Io = SendfileStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (SendfileStream(stream), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A client connection: reads as TCP does; writes pointing into a mapped file go out
/// with sendfile.
pub struct SendfileStream(TcpStream);

impl SendfileStream {
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.0.set_nodelay(on)
    }

    /// The socket, taken off this runtime's reactor so another runtime can own it.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        self.0.into_std()
    }

    /// A socket from `into_std`, on the reactor of the runtime this is called in.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Self> {
        TcpStream::from_std(stream).map(SendfileStream)
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        if let Some((index, file)) = linux::first_file_backed(bufs) {
            if index > 0 {
                // What comes before the file (a response head) goes first, held back
                // until the file's pages follow so both leave in the same packets.
                return linux::poll_send_more(&self.0, cx, &bufs[..index]);
            }
            match linux::poll_sendfile(&self.0, cx, file, bufs[0].len()) {
                // A file system that maps but will not sendfile: this file's bytes are
                // written from memory from now on, like any other body.
                Poll::Ready(Err(e)) if linux::refuses_sendfile(&e) => linux::forget(file, &e),
                sent => return sent,
            }
        }
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeMap;
    use std::io::{self, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{LazyLock, RwLock};
    use std::task::{Context, Poll};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use super::MIN_LOOKED_UP;

    /// Live mappings by start address: (length, file descriptor).
    static MAPPINGS: LazyLock<RwLock<BTreeMap<usize, (usize, RawFd)>>> =
        LazyLock::new(Default::default);
    static LIVE_FILES: AtomicUsize = AtomicUsize::new(0);

    /// At most a quarter of the descriptors this process may open (each mapping keeps
    /// its file open): the rest stay for connections, storage and the database.
    fn max_files() -> usize {
        static MAX: LazyLock<usize> = LazyLock::new(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes only the struct we pass.
            let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
                limit.rlim_cur
            } else {
                1024
            };
            (soft.min(1 << 20) / 4) as usize
        });
        *MAX
    }

    /// A file mapped read-only, registered while it lives: a memory file written once,
    /// or a stored object (written to a temporary name and renamed into place, so its
    /// bytes never change under the mapping).
    pub struct Mapping {
        fd: OwnedFd,
        ptr: *const u8,
        len: usize,
    }

    // SAFETY: the mapping is read-only and lives as long as the value; sharing a
    // pointer to immutable memory between threads is sound.
    unsafe impl Send for Mapping {}
    unsafe impl Sync for Mapping {}

    impl Mapping {
        /// `data` in a new memory file. None when the process already holds its share
        /// of mappings.
        pub fn memory_file(data: &[u8]) -> io::Result<Option<Mapping>> {
            Self::counted(|| {
                // SAFETY: memfd_create takes a NUL-terminated name and flags; the
                // returned descriptor is new and ours to own.
                let fd =
                    unsafe { libc::memfd_create(c"lectern-media".as_ptr(), libc::MFD_CLOEXEC) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: fd was just created and nothing else owns it.
                let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                file.write_all(data)?;
                Self::map(OwnedFd::from(file), data.len())
            })
        }

        /// The file at `path`, which must be `len` bytes long.
        pub fn stored_file(path: &std::path::Path, len: usize) -> io::Result<Option<Mapping>> {
            Self::counted(|| {
                let file = std::fs::File::open(path)?;
                if file.metadata()?.len() != len as u64 {
                    return Err(io::Error::other(
                        "the file changed size since it was looked at",
                    ));
                }
                Self::map(OwnedFd::from(file), len)
            })
        }

        fn counted(make: impl FnOnce() -> io::Result<Mapping>) -> io::Result<Option<Mapping>> {
            if LIVE_FILES.fetch_add(1, Ordering::Relaxed) >= max_files() {
                LIVE_FILES.fetch_sub(1, Ordering::Relaxed);
                return Ok(None);
            }
            let made = make();
            if made.is_err() {
                LIVE_FILES.fetch_sub(1, Ordering::Relaxed);
            }
            made.map(Some)
        }

        fn map(fd: OwnedFd, len: usize) -> io::Result<Mapping> {
            // SAFETY: a fresh read-only shared mapping of the whole file; the kernel
            // picks the address, and we unmap it exactly once, in Drop.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let mapping = Mapping {
                fd,
                ptr: ptr as *const u8,
                len,
            };
            MAPPINGS
                .write()
                .expect("mappings lock")
                .insert(mapping.ptr as usize, (len, mapping.fd.as_raw_fd()));
            Ok(mapping)
        }
    }

    impl AsRef<[u8]> for Mapping {
        fn as_ref(&self) -> &[u8] {
            // SAFETY: ptr/len describe our live read-only mapping.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // Unregistered before unmapping, so no lookup can find an address that a
            // later mapping might reuse. No write can be pointing here: whoever wrote
            // from these bytes held a reference to them.
            MAPPINGS
                .write()
                .expect("mappings lock")
                .remove(&(self.ptr as usize));
            // SAFETY: ptr/len are the mapping made in `map`, unmapped only here.
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
            LIVE_FILES.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Where a slice lives in a mapped file: its descriptor and offset, and where the
    /// mapping starts.
    #[derive(Clone, Copy)]
    pub struct FileSlice {
        fd: RawFd,
        offset: i64,
        base: usize,
    }

    fn find(buf: &[u8]) -> Option<FileSlice> {
        let start = buf.as_ptr() as usize;
        let mappings = MAPPINGS.read().expect("mappings lock");
        let (&base, &(len, fd)) = mappings.range(..=start).next_back()?;
        (start + buf.len() <= base + len).then_some(FileSlice {
            fd,
            offset: (start - base) as i64,
            base,
        })
    }

    /// sendfile's answers for a file it cannot send (EINVAL: no page-cache reads on
    /// this file system), as against a socket that failed.
    pub fn refuses_sendfile(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
        )
    }

    /// Stops looking `file`'s mapping up: its bytes stay readable (the mapping lives
    /// until its owner drops it) and go out by plain writes.
    pub fn forget(file: FileSlice, why: &io::Error) {
        let mut mappings = MAPPINGS.write().expect("mappings lock");
        if mappings
            .get(&file.base)
            .is_some_and(|&(_, fd)| fd == file.fd)
        {
            mappings.remove(&file.base);
            tracing::warn!(error = %why, "sendfile refused a cached file; sending it by copying");
        }
    }

    /// Points a live mapping's entry at another descriptor (tests: one sendfile
    /// refuses).
    #[cfg(test)]
    pub fn swap_descriptor(data: &[u8], fd: RawFd) {
        let slice = find(data).expect("a mapped body");
        MAPPINGS
            .write()
            .expect("mappings lock")
            .insert(slice.base, (data.len() + slice.offset as usize, fd));
    }

    /// The first buffer long enough to be worth it that lies in a mapped file.
    pub fn first_file_backed(bufs: &[io::IoSlice<'_>]) -> Option<(usize, FileSlice)> {
        if LIVE_FILES.load(Ordering::Relaxed) == 0 {
            return None;
        }
        bufs.iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= MIN_LOOKED_UP)
            .find_map(|(i, b)| find(b).map(|f| (i, f)))
    }

    /// Runs one non-blocking send on the socket, waiting for room when it is full.
    fn poll_send(
        socket: &TcpStream,
        cx: &mut Context<'_>,
        mut send: impl FnMut(RawFd) -> isize,
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(socket.poll_write_ready(cx))?;
            let sent = socket.try_io(Interest::WRITABLE, || match send(socket.as_raw_fd()) {
                n if n < 0 => Err(io::Error::last_os_error()),
                n => Ok(n as usize),
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    pub fn poll_sendfile(
        socket: &TcpStream,
        cx: &mut Context<'_>,
        file: FileSlice,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let sent = poll_send(socket, cx, |out| {
            let mut offset = file.offset;
            // SAFETY: both descriptors are open (the file's owner outlives the slice
            // being written); the kernel reads the file, not our memory.
            unsafe { libc::sendfile(out, file.fd, &mut offset, len) }
        });
        if let Poll::Ready(Ok(n)) = sent {
            crate::metrics::metrics().sendfile_bytes.inc_by(n as u64);
        }
        sent
    }

    pub fn poll_send_more(
        socket: &TcpStream,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_send(socket, cx, |out| {
            // SAFETY: IoSlice is ABI-compatible with iovec on Unix, and the slices are
            // borrowed for the whole call.
            unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len();
                libc::sendmsg(out, &msg, libc::MSG_MORE | libc::MSG_NOSIGNAL)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_stay_on_the_heap_and_large_ones_keep_their_bytes() {
        let small = Bytes::from(vec![7u8; MIN_FILE_BACKED - 1]);
        assert_eq!(file_backed(small.clone()).as_ptr(), small.as_ptr());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let backed = file_backed(Bytes::from(data.clone()));
        assert_eq!(&backed[..], &data[..]);
        #[cfg(target_os = "linux")]
        {
            let slices = [
                io::IoSlice::new(b"head"),
                io::IoSlice::new(&backed[1000..200_000]),
            ];
            let (index, _) = linux::first_file_backed(&slices).expect("found in its memory file");
            assert_eq!(index, 1);
            let copy = backed.to_vec();
            assert!(
                linux::first_file_backed(&[io::IoSlice::new(&copy)]).is_none(),
                "a copy is not in the file"
            );
        }
    }

    #[test]
    fn a_stored_file_is_mapped_only_at_the_size_it_was_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.ts");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert!(
            map_stored_file(&path, data.len() as u64 + 1).is_none(),
            "its size changed"
        );
        assert!(map_stored_file(&dir.path().join("gone.ts"), data.len() as u64).is_none());
        #[cfg(target_os = "linux")]
        {
            let mapped = map_stored_file(&path, data.len() as u64).expect("mapped");
            assert_eq!(&mapped[..], &data[..]);
            assert!(linux::first_file_backed(&[io::IoSlice::new(&mapped[5..100_000])]).is_some());
        }
    }

    /// A mapping whose file sendfile refuses (here a directory: EINVAL, as from a file
    /// system without page-cache reads) is still sent
    /// whole, by copying, and is no longer looked up after the first refusal.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_body_whose_file_refuses_sendfile_is_copied_whole() {
        use std::os::fd::AsRawFd;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let data: Vec<u8> = (0..500_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let body = file_backed(Bytes::from(data.clone()));
        let dir = tempfile::tempdir().unwrap();
        let refusing = std::fs::File::open(dir.path()).unwrap();
        linux::swap_descriptor(&body, refusing.as_raw_fd());
        let kept = body.clone();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut stream = SendfileStream(listener.accept().await.unwrap().0);
            for _ in 0..2 {
                stream.write_all(&body[1000..]).await.unwrap();
            }
            stream.shutdown().await.unwrap();
        });
        let mut received = Vec::new();
        TcpStream::connect(addr)
            .await
            .unwrap()
            .read_to_end(&mut received)
            .await
            .unwrap();
        server.await.unwrap();
        assert_eq!(received.len(), 2 * (data.len() - 1000));
        assert!(
            received[..data.len() - 1000] == data[1000..]
                && received[data.len() - 1000..] == data[1000..]
        );
        assert_eq!(bytes_sent_by_sendfile(), 0);
        assert!(
            linux::first_file_backed(&[io::IoSlice::new(&kept)]).is_none(),
            "no longer looked up"
        );
    }

    /// A real server and a slow client: the file's bytes must arrive whole, in order,
    /// between other responses on the same connection, and through sendfile.
    #[tokio::test]
    async fn a_slow_keep_alive_client_gets_file_backed_bodies_whole_between_others() {
        use axum::routing::get;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let body = file_backed(Bytes::from(data.clone()));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), &data).unwrap();
        let stored = map_stored_file(&dir.path().join("big"), data.len() as u64)
            .unwrap_or_else(|| Bytes::from(data.clone()));
        let part = stored.slice(1_000_003..1_700_000);
        let app = axum::Router::new()
            .route(
                "/big",
                get(move || {
                    let b = body.clone();
                    async move { b }
                }),
            )
            .route(
                "/part",
                get(move || {
                    let b = part.clone();
                    async move { b }
                }),
            )
            .route("/small", get(|| async { "small" }));
        let listener = SendfileListener::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let before = bytes_sent_by_sendfile();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = socket.connect(addr).await.unwrap();
        let asks = ["/big", "/small", "/part", "/big"];
        for path in asks {
            client
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
        }
        let mut received = Vec::new();
        let mut chunk = vec![0u8; 8192];
        let want = |path: &str| match path {
            "/big" => data.clone(),
            "/part" => data[1_000_003..1_700_000].to_vec(),
            _ => b"small".to_vec(),
        };
        let expected_len: usize = asks.iter().map(|p| want(p).len()).sum();
        // Slow at first, so the server's socket fills and sendfile has to wait.
        for _ in 0..20 {
            let n = client.read(&mut chunk).await.unwrap();
            received.extend_from_slice(&chunk[..n]);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        loop {
            let mut rest = &received[..];
            let mut bodies = 0;
            while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&rest[..end])
                    .unwrap()
                    .to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if rest.len() < end + 4 + len {
                    break;
                }
                assert!(head.starts_with("http/1.1 200"), "{head}");
                assert!(
                    rest[end + 4..end + 4 + len] == want(asks[bodies])[..],
                    "body {} differs",
                    asks[bodies]
                );
                rest = &rest[end + 4 + len..];
                bodies += 1;
            }
            if bodies == asks.len() {
                assert!(rest.is_empty());
                break;
            }
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed after {bodies} responses");
            received.extend_from_slice(&chunk[..n]);
        }
        #[cfg(target_os = "linux")]
        {
            // All but the last few KiB of each: a body's tail shorter than MIN_LOOKED_UP,
            // left after partial sends, is copied.
            let sent = bytes_sent_by_sendfile() - before;
            let file_backed = (expected_len - 5) as u64;
            assert!(
                sent + 3 * MIN_LOOKED_UP as u64 >= file_backed,
                "{sent} of {file_backed} bytes went through sendfile"
            );
        }
        let _ = (before, expected_len);
    }
}
