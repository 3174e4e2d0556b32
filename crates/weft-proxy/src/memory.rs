//! Giving memory back to the operating system after one-off peaks, such as decoding
//! Envoy's descriptors to read a configuration file: a sidecar's resident size should be
//! what it needs to serve, not the most it ever needed. The `weft` binary runs on
//! mimalloc; this asks it to return freed pages now rather than keep them cached.
#![allow(unsafe_code)]

/// Returns freed memory to the operating system (a no-op under other allocators).
pub fn release_free_memory() {
    // SAFETY: mi_collect takes no pointers; it only walks mimalloc's own heaps, and
    // does nothing when mimalloc is linked but not the global allocator.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Drops this executable's code pages from the resident set. Reading a configuration
/// file runs a lot of code (YAML, reflection, decoding every Envoy type) that serving
/// never runs again; the pages serving needs come back from the page cache on first
/// touch (a minor fault), the rest stay out. Linux only; errors are ignored.
pub fn page_out_startup_code() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let path = parts.nth(3).unwrap_or("");
        if path != exe || perms.contains('w') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is a read-only file mapping of our own executable, taken
        // from /proc/self/maps; MADV_PAGEOUT only drops clean pages from the resident
        // set, it does not unmap or change them.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
}
