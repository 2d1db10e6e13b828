//! Shared memory on the simulated machine (`mm::shmem`, `mm::filemap`): a shared
//! mapping's folios come from the file's page cache at the sizes `shmem_enabled`
//! allows, folded where aligned; fork shares them without copy-on-write (the child
//! faults them in from the cache); a private mapping copies on write and never
//! changes the file; past the end of the file a fault is SIGBUS; truncation drops
//! folios and zeroes what the end cuts; mprotect and mremap keep a shared mapping
//! writable and on the same file pages. Every test ends with the audit and every
//! frame back once the address spaces and the file are gone.

use alloc::string::String;
use alloc::sync::Arc;

use super::collapse::{all_back, env, leaf, only, pattern};
use super::*;
use crate::mm::addr::{CONT_SIZE, PMD_SIZE};
use crate::mm::install::FaultError;
use crate::mm::mthp::HugeHint;
use crate::mm::shmem::Shmem;
use crate::mm::PhysAddr;
use crate::uapi::{MAP_PRIVATE, MAP_SHARED};

/// Page cache folio sizes: only `orders` (`always`), the top level `never`.
fn shmem_only(orders: &[usize]) {
    mthp::SHMEM_ENABLED.write("never").unwrap();
    for o in mthp::MTHP_ORDERS {
        let w = if orders.contains(&o) {
            "always"
        } else {
            "never"
        };
        mthp::shmem_size_enabled(o).write(w).unwrap();
    }
}

/// A fresh machine, no anonymous large folios, page cache folios of `orders`, an
/// address space and a file of `size` bytes.
fn setup(
    orders: &[usize],
    size: u64,
) -> (
    std::sync::MutexGuard<'static, ()>,
    Mm<HostMachine>,
    Arc<Shmem>,
) {
    let machine = host::machine();
    only(&[]);
    shmem_only(orders);
    let mm = Mm::new_in(&env()).unwrap();
    (
        machine,
        mm,
        Shmem::new(|_| String::from("/memfd:test"), size),
    )
}

/// Map `len` bytes of `file` from `offset` at `va` (fixed), shared or private.
fn map(
    mm: &mut Mm<HostMachine>,
    va: VirtAddr,
    len: usize,
    file: &Arc<Shmem>,
    offset: u64,
    shared: bool,
) {
    let flags = MAP_FIXED | if shared { MAP_SHARED } else { MAP_PRIVATE };
    mm.mmap_file(
        va.as_u64(),
        len as u64,
        VmProt::READ_WRITE,
        flags,
        file.clone(),
        offset,
    )
    .expect("mmap_file");
}

/// The frame `va` maps after a fault of `access` there.
fn fault_pa(mm: &mut Mm<HostMachine>, va: VirtAddr, access: Access) -> PhysAddr {
    mm.handle_fault(va, access).expect("fault");
    leaf(mm, va).pa_of(va)
}

/// Store `pattern(i)` at page `i` of a mapping through `mm`'s tables.
fn store(mm: &mut Mm<HostMachine>, va: VirtAddr, i: usize) {
    let at = va.add(i * PAGE_SIZE);
    let pa = fault_pa(mm, at, Access::Write);
    assert!(leaf(mm, at).pte.is_writable());
    host::write_byte(pa, pattern(i));
}

/// The first byte of page `i` as `mm` reads it (faulting it in).
fn load(mm: &mut Mm<HostMachine>, va: VirtAddr, i: usize) -> u8 {
    let at = va.add(i * PAGE_SIZE);
    host::read_byte(fault_pa(mm, at, Access::Read))
}

/// The first byte of file page `i`, read through the file.
fn file_byte(file: &Shmem, i: usize) -> u8 {
    let mut b = [0u8];
    file.read(&env(), (i * PAGE_SIZE) as u64, &mut b);
    b[0]
}

fn finish(mms: impl IntoIterator<Item = Mm<HostMachine>>, file: Arc<Shmem>) {
    let mms: Vec<_> = mms.into_iter().collect();
    audit::check(mms.iter()).expect("audit");
    drop(file);
    all_back(mms);
}

const VA: VirtAddr = VirtAddr(0x4000_0000);

#[test]
fn shared_writes_are_seen_by_a_forked_child_and_blocks_stay_folded() {
    let (_m, mut mm, file) = setup(&[4], 2 * CONT_SIZE as u64);
    map(&mut mm, VA, 2 * CONT_SIZE, &file, 0, true);
    let (anon, cached) = (
        mthp::stats(4).anon_fault_alloc.load(Ordering::Relaxed),
        mthp::stats(4).shmem_alloc.load(Ordering::Relaxed),
    );
    for i in 0..32 {
        store(&mut mm, VA, i);
    }
    assert!(leaf(&mm, VA).pte.is_cont() && leaf(&mm, VA.add(CONT_SIZE)).pte.is_cont());
    assert_eq!(
        mthp::stats(4).anon_fault_alloc.load(Ordering::Relaxed),
        anon
    );
    assert_eq!(
        mthp::stats(4).shmem_alloc.load(Ordering::Relaxed),
        cached + 2
    );
    let mut child = mm.fork().unwrap();
    // fork copies no entry of a shared mapping: the child faults them in, folded.
    assert!(child.tables.get(VA).is_none());
    for i in 0..32 {
        assert_eq!(load(&mut child, VA, i), pattern(i), "child page {i}");
    }
    assert!(leaf(&child, VA).pte.is_cont());
    assert_eq!(leaf(&child, VA).pa_of(VA), leaf(&mm, VA).pa_of(VA));
    // A child's write needs no copy and is the parent's too.
    let pa = leaf(&child, VA.add(3 * PAGE_SIZE)).pa_of(VA.add(3 * PAGE_SIZE));
    host::write_byte(
        fault_pa(&mut child, VA.add(3 * PAGE_SIZE), Access::Write),
        0xaa,
    );
    assert_eq!(
        leaf(&child, VA.add(3 * PAGE_SIZE)).pa_of(VA.add(3 * PAGE_SIZE)),
        pa
    );
    assert_eq!(load(&mut mm, VA, 3), 0xaa);
    assert_eq!(file_byte(&file, 3), 0xaa);
    finish([mm, child], file);
}

#[test]
fn a_private_mapping_copies_on_write_and_never_changes_the_file() {
    let (_m, mut mm, file) = setup(&[4], CONT_SIZE as u64);
    file.write(&env(), 0, &[7u8]).unwrap();
    map(&mut mm, VA, CONT_SIZE, &file, 0, false);
    let other = VA.add(PMD_SIZE);
    map(&mut mm, other, CONT_SIZE, &file, 0, true);
    // A read maps the file's page, read-only.
    assert_eq!(load(&mut mm, VA, 0), 7);
    let cached = leaf(&mm, VA).pa_of(VA);
    assert!(!leaf(&mm, VA).pte.is_writable());
    // A write copies the page: the file and the shared mapping keep 7.
    store(&mut mm, VA, 0);
    assert_ne!(leaf(&mm, VA).pa_of(VA), cached);
    assert_eq!(file_byte(&file, 0), 7);
    assert_eq!(load(&mut mm, other, 0), 7);
    // A write to a page never read copies the file's page directly.
    store(&mut mm, VA, 5);
    assert_eq!(file_byte(&file, 5), 0);
    audit::check([&mm].into_iter()).expect("audit");
    // A shared write is seen by private pages that were not copied, as on Linux.
    host::write_byte(fault_pa(&mut mm, other.add(PAGE_SIZE), Access::Write), 9);
    assert_eq!(load(&mut mm, VA, 1), 9);
    finish([mm], file);
}

#[test]
fn a_fault_past_the_end_of_the_file_is_sigbus_until_it_grows() {
    let (_m, mut mm, file) = setup(&[], PAGE_SIZE as u64);
    map(&mut mm, VA, 4 * PAGE_SIZE, &file, 0, true);
    store(&mut mm, VA, 0);
    assert_eq!(
        mm.handle_fault(VA.add(PAGE_SIZE), Access::Read),
        Err(FaultError::Bus)
    );
    file.set_size(&env(), 3 * PAGE_SIZE as u64 - 1).unwrap();
    assert_eq!(load(&mut mm, VA, 2), 0);
    assert_eq!(
        mm.handle_fault(VA.add(3 * PAGE_SIZE), Access::Write),
        Err(FaultError::Bus)
    );
    finish([mm], file);
}

/// Found by the property tests (200 cases): a shared mapping longer than its file,
/// a page-cache folio (128 KiB here) reaching past the end of the file: the fault maps
/// only the file's pages, and an access past the end stays SIGBUS.
#[test]
fn a_folio_reaching_past_the_end_of_the_file_is_not_mapped_there() {
    let (_m, mut mm, file) = setup(&[5], 16 * PAGE_SIZE as u64);
    map(&mut mm, VA, 32 * PAGE_SIZE, &file, 0, true);
    assert_eq!(load(&mut mm, VA, 0), 0);
    assert!(
        mm.tables.get(VA.add(20 * PAGE_SIZE)).is_none(),
        "mapped past the end"
    );
    assert_eq!(
        mm.handle_fault(VA.add(20 * PAGE_SIZE), Access::Read),
        Err(FaultError::Bus)
    );
    assert_eq!(load(&mut mm, VA, 15), 0);
    finish([mm], file);
}

#[test]
fn truncation_frees_folios_and_zeroes_what_the_end_cuts() {
    let (_m, mm, file) = setup(&[4], 4 * CONT_SIZE as u64);
    let free = frames().free_frames();
    let data = alloc::vec![0x5au8; 4 * CONT_SIZE];
    assert_eq!(file.write(&env(), 0, &data), Ok(data.len()));
    assert_eq!(free - frames().free_frames(), 64, "four 64 KiB folios");
    assert_eq!(file.resident_pages(), 64);
    // Cut inside the second folio: it stays, the last two go.
    file.set_size(&env(), CONT_SIZE as u64 + 100).unwrap();
    assert_eq!(free - frames().free_frames(), 32);
    file.set_size(&env(), 4 * CONT_SIZE as u64).unwrap();
    let mut buf = alloc::vec![1u8; 2 * CONT_SIZE];
    file.read(&env(), 0, &mut buf);
    assert!(buf[..CONT_SIZE + 100].iter().all(|&b| b == 0x5a));
    assert!(
        buf[CONT_SIZE + 100..].iter().all(|&b| b == 0),
        "the cut part reads zeros"
    );
    finish([mm], file);
}

#[test]
fn truncation_unmaps_past_the_end_in_every_mapping_even_private_copies() {
    let (_m, mut mm, file) = setup(&[4], CONT_SIZE as u64);
    map(&mut mm, VA, CONT_SIZE, &file, 0, true);
    let private = VA.add(PMD_SIZE);
    map(&mut mm, private, CONT_SIZE, &file, 0, false);
    store(&mut mm, VA, 0);
    store(&mut mm, private, 9);
    let mut child = mm.fork().unwrap();
    assert_eq!(load(&mut child, VA, 12), 0);
    // Cut to 8 pages: the folio stays in the cache, pages 8.. go from every mapping.
    file.set_size(&env(), 8 * PAGE_SIZE as u64).unwrap();
    for m in [&mut mm, &mut child] {
        m.unmap_file_from(&file, 8).unwrap();
        assert!(m.tables.get(VA.add(12 * PAGE_SIZE)).is_none());
        assert!(
            m.tables.get(private.add(9 * PAGE_SIZE)).is_none(),
            "a private copy past the end"
        );
        assert!(m.tables.get(VA.add(7 * PAGE_SIZE)).is_some());
        assert_eq!(
            m.handle_fault(VA.add(12 * PAGE_SIZE), Access::Read),
            Err(FaultError::Bus)
        );
    }
    audit::check([&mm, &child].into_iter()).expect("audit");
    // Cut to nothing: the cache lets the folio go, the mappings hold it until unmapped.
    file.set_size(&env(), 0).unwrap();
    assert_eq!(file.resident_pages(), 0);
    audit::check([&mm, &child].into_iter()).expect("audit");
    for m in [&mut mm, &mut child] {
        m.unmap_file_from(&file, 0).unwrap();
        assert!(m.tables.get(VA).is_none());
    }
    finish([mm, child], file);
}

#[test]
fn a_punched_hole_reads_zeros_everywhere_but_in_private_copies() {
    // Four 64 KiB folios; the hole runs from the middle of page 3 to the middle of
    // page 40: folio 1 (pages 16..32) goes whole, folios 0 and 2 are cut (zeroed).
    let (_m, mut mm, file) = setup(&[4], 4 * CONT_SIZE as u64);
    map(&mut mm, VA, 4 * CONT_SIZE, &file, 0, true);
    let private = VA.add(PMD_SIZE);
    map(&mut mm, private, 4 * CONT_SIZE, &file, 0, false);
    for i in 0..64 {
        store(&mut mm, VA, i);
    }
    // A private copy of page 20, and the file's page 21 mapped privately.
    store(&mut mm, private, 20);
    host::write_byte(
        fault_pa(&mut mm, private.add(20 * PAGE_SIZE), Access::Write),
        0xcc,
    );
    assert_eq!(load(&mut mm, private, 21), pattern(21));
    let mut child = mm.fork().unwrap();
    assert_eq!(load(&mut child, VA, 30), pattern(30));
    let used = frames().managed_frames() - frames().free_frames();
    let (off, len) = (3 * PAGE_SIZE as u64 + 100, 37 * PAGE_SIZE as u64);
    let (first, end) = file.punch(&env(), off, len).unwrap();
    assert_eq!((first, end), (4, 40));
    for m in [&mut mm, &mut child] {
        m.unmap_file_range(&file, first, end, false).unwrap();
        assert!(m.tables.get(VA.add(30 * PAGE_SIZE)).is_none());
        assert!(
            m.tables.get(private.add(21 * PAGE_SIZE)).is_none(),
            "the file's page"
        );
    }
    assert!(
        mm.tables.get(VA.add(41 * PAGE_SIZE)).is_some(),
        "past the hole"
    );
    audit::check([&mm, &child].into_iter()).expect("audit");
    // The whole folio inside is freed now that nothing maps it (and the child's table
    // that mapped only page 30 with it).
    let freed = used - (frames().managed_frames() - frames().free_frames());
    assert!((16..=17).contains(&freed), "{freed} frames freed");
    let mut page = [0u8; PAGE_SIZE];
    // Byte 0 of each page was written: page 3's is before the hole, page 40's in it.
    file.read(&env(), 3 * PAGE_SIZE as u64, &mut page);
    assert_eq!(page[0], pattern(3));
    file.read(&env(), 40 * PAGE_SIZE as u64, &mut page);
    assert_eq!(page[0], 0);
    assert_eq!(file_byte(&file, 41), pattern(41));
    for m in [&mut mm, &mut child] {
        assert_eq!(load(m, VA, 10), 0);
        assert_eq!(load(m, VA, 30), 0);
        assert_eq!(load(m, VA, 45), pattern(45));
        assert_eq!(load(m, private, 21), 0);
    }
    // The private copy keeps what was written to it (Linux: no even_cows for a hole).
    assert_eq!(load(&mut mm, private, 20), 0xcc);
    // A write seal refuses the punch.
    file.allow_sealing();
    file.add_seals(crate::mm::shmem::F_SEAL_WRITE).unwrap();
    assert_eq!(file.punch(&env(), 0, 4096), Err(crate::uapi::EPERM));
    finish([mm, child], file);
}

#[test]
fn mprotect_and_mremap_keep_a_shared_mapping_on_its_file_pages() {
    let (_m, mut mm, file) = setup(&[4], CONT_SIZE as u64);
    map(&mut mm, VA, CONT_SIZE, &file, 0, true);
    for i in 0..16 {
        store(&mut mm, VA, i);
    }
    let pa = leaf(&mm, VA).pa_of(VA);
    mm.mprotect(VA, VA.add(CONT_SIZE), VmProt::READ).unwrap();
    assert!(!leaf(&mm, VA).pte.is_writable());
    mm.mprotect(VA, VA.add(CONT_SIZE), VmProt::READ_WRITE)
        .unwrap();
    // Write comes back to every entry: the pages are the file's, not shared by fork.
    assert!(leaf(&mm, VA.add(5 * PAGE_SIZE)).pte.is_writable());
    assert!(leaf(&mm, VA).pte.is_cont());
    let to = VA.add(4 * PMD_SIZE);
    let flags = crate::uapi::MREMAP_MAYMOVE | crate::uapi::MREMAP_FIXED;
    mm.mremap(
        VA.as_u64(),
        CONT_SIZE as u64,
        CONT_SIZE as u64,
        flags,
        to.as_u64(),
    )
    .unwrap();
    assert_eq!(leaf(&mm, to).pa_of(to), pa);
    // A page faulted in after the move is the same file page.
    mm.munmap(to.add(PAGE_SIZE), to.add(2 * PAGE_SIZE)).unwrap();
    map(
        &mut mm,
        to.add(PAGE_SIZE),
        PAGE_SIZE,
        &file,
        PAGE_SIZE as u64,
        true,
    );
    assert_eq!(load(&mut mm, to, 1), pattern(1));
    finish([mm], file);
}

#[test]
fn folio_sizes_follow_shmem_enabled_and_the_mapping_alignment() {
    let (_m, mut mm, file) = setup(&[], 4 * PMD_SIZE as u64);
    // 2 MiB inherits the top level: `always` gives one block per 2 MiB.
    mthp::shmem_size_enabled(9).write("inherit").unwrap();
    mthp::SHMEM_ENABLED.write("always").unwrap();
    let alloc = mthp::stats(9).shmem_alloc.load(Ordering::Relaxed);
    let pmd_mapped = || crate::mm::folio::FILE_PMD_MAPPED.load(Ordering::Relaxed);
    let before = pmd_mapped();
    map(&mut mm, VA, 2 * PMD_SIZE, &file, 0, true);
    store(&mut mm, VA, 3);
    assert_eq!(leaf(&mm, VA).level, 2, "a 2 MiB block");
    assert_eq!(
        mthp::stats(9).shmem_alloc.load(Ordering::Relaxed),
        alloc + 1
    );
    // ShmemPmdMapped: counted once however many map the folio whole, until the last.
    let mut child = mm.fork().unwrap();
    store(&mut child, VA, 4);
    assert_eq!(leaf(&child, VA).level, 2);
    assert_eq!(pmd_mapped(), before + 512);
    drop(child);
    assert_eq!(pmd_mapped(), before + 512);
    mm.munmap(VA, VA.add(PMD_SIZE)).unwrap();
    assert_eq!(pmd_mapped(), before);
    map(&mut mm, VA, PMD_SIZE, &file, 0, true);
    // Mapped at an offset that does not match the address's alignment: pages only.
    let odd = VA.add(4 * PMD_SIZE);
    map(
        &mut mm,
        odd,
        PMD_SIZE,
        &file,
        2 * PMD_SIZE as u64 + PAGE_SIZE as u64,
        true,
    );
    store(&mut mm, odd, 0);
    assert_eq!(leaf(&mm, odd).level, 3);
    assert!(!leaf(&mm, odd).pte.is_cont());
    // `deny` overrides every size; `within_size` needs the folio inside the file.
    mthp::SHMEM_ENABLED.write("deny").unwrap();
    assert_eq!(
        crate::mm::shmem::allowed_orders(HugeHint::Huge, 1 << 30, 0),
        0
    );
    mthp::SHMEM_ENABLED.write("within_size").unwrap();
    let pmd = 1 << 9;
    assert_eq!(
        crate::mm::shmem::allowed_orders(HugeHint::Default, PMD_SIZE as u64, 0),
        pmd
    );
    assert_eq!(
        crate::mm::shmem::allowed_orders(HugeHint::Default, PMD_SIZE as u64, 512),
        0
    );
    mthp::SHMEM_ENABLED.write("advise").unwrap();
    assert_eq!(
        crate::mm::shmem::allowed_orders(HugeHint::Default, 1 << 30, 0),
        0
    );
    assert_eq!(
        crate::mm::shmem::allowed_orders(HugeHint::Huge, 1 << 30, 0),
        pmd
    );
    mthp::SHMEM_ENABLED.write("never").unwrap();
    mthp::shmem_size_enabled(9).write("never").unwrap();
    finish([mm], file);
}

#[test]
fn exit_of_every_mapper_leaves_the_file_its_pages() {
    let (_m, mut mm, file) = setup(&[4], CONT_SIZE as u64);
    map(&mut mm, VA, CONT_SIZE, &file, 0, true);
    store(&mut mm, VA, 2);
    let child = mm.fork().unwrap();
    drop(child);
    drop(mm);
    // The data outlives its mappings: the file holds it.
    assert_eq!(file_byte(&file, 2), pattern(2));
    assert_eq!(file.resident_pages(), 16);
    drop(file);
    all_back([]);
}

#[test]
fn the_page_cache_index_stops_at_its_cap_and_nothing_panics() {
    let (_m, mut mm, file) = setup(&[], 64 * PAGE_SIZE as u64);
    /// Puts the cap back, also when the test fails.
    struct Cap(u64);
    impl Drop for Cap {
        fn drop(&mut self) {
            crate::mm::shmem::MAX_FOLIOS.store(self.0, Ordering::Relaxed);
        }
    }
    let _cap = Cap(crate::mm::shmem::MAX_FOLIOS.swap(8, Ordering::Relaxed));
    map(&mut mm, VA, 64 * PAGE_SIZE, &file, 0, true);
    for i in 0..8 {
        store(&mut mm, VA, i);
    }
    // The ninth page has no room in the index: the fault is out of memory, the write
    // ENOMEM; a page already there is still written.
    assert_eq!(
        mm.handle_fault(VA.add(8 * PAGE_SIZE), Access::Write),
        Err(FaultError::Oom)
    );
    assert_eq!(
        file.write(&env(), 9 * PAGE_SIZE as u64, b"x"),
        Err(crate::uapi::ENOMEM)
    );
    assert_eq!(file.write(&env(), 0, b"y"), Ok(1));
    // Truncation gives the room back.
    file.set_size(&env(), 0).unwrap();
    mm.unmap_file_from(&file, 0).unwrap();
    file.set_size(&env(), 64 * PAGE_SIZE as u64).unwrap();
    store(&mut mm, VA, 20);
    finish([mm], file);
}
