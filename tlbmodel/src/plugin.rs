//! The QEMU plugin (API v4, QEMU 10.0): every data access's VA goes through the
//! modelled TLB of [`crate::model`], counted per phase and per VA half (user: TTBR0,
//! kernel: TTBR1); an L2 miss walks the guest's own tables ([`crate::walk`]).
//!
//! - At translation, instructions are decoded ([`crate::decode`]): MSR to TTBR0/TTBR1/
//!   TCR/SCTLR and TLBI get an execution callback that reads their register operand
//!   (the value about to be written, or the TLBI's address and ASID); the phase
//!   markers get one that opens or closes a phase; every instruction gets a memory
//!   callback.
//! - Guest RAM is read through the host address QEMU gives for the first instruction
//!   translated in RAM while the MMU is off (then VA = PA), plus the offset of the PA:
//!   API v4 has no physical-memory read. Every access is verified against QEMU: the
//!   PA the model gives (from a walk, or from a TLB entry, so a missed TLBI or a
//!   misprogrammed contiguous run shows) against `qemu_plugin_get_hwaddr`, a load's
//!   value against the RAM read there; a walk that faults for an access QEMU
//!   completed is a mismatch too. The exit line reports `verified` and `mismatches`
//!   (scripts/tlb-check.sh and bench-report want 0).
//! - Output (`qemu_plugin_outs`, QEMU's log: stderr unless `-D`): one line per phase,
//!   `tlbmodel: {"phase":ID,...}`, and `tlbmodel: {"exit":...}` at the end.
//!
//! Arguments: `model=NAME` (a [`Preset`] name, default cortex-a76), `ram_mib=N`
//! (the guest's `-m`, default 1024), `walk_cache=N` (entries, default the preset's),
//! `cold=on` (each phase starts from an empty TLB, as after a switch from another
//! busy process: figures that can be counted by hand; default off, the TLB as the
//! benchmark's own set-up left it).
//!
//! One vCPU is modelled (the benchmarks run with -smp 1): with more, every CPU's
//! accesses would go through one TLB.

use crate::decode::{self, Insn, Sysreg, TlbiKind};
use crate::model::{Counts, Preset, Tlb, Tlbi};
use crate::walk::{Miss, Regime};
use qemu_plugin::{
    qemu_plugin_get_registers, qemu_plugin_outs, qemu_plugin_register_atexit_cb, register, Args,
    CallbackFlags, HasCallbacks, Info, MemRW, MemValue, MemoryInfo, PluginId, Register,
    RegisterDescriptor, Result, TranslationBlock, VCPUIndex, Value,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Where QEMU's `virt` board puts RAM.
const RAM_BASE: u64 = 0x4000_0000;

/// Guest RAM as QEMU's host mapping of it.
#[derive(Clone, Copy)]
struct Ram {
    host: usize,
    size: u64,
}

impl Ram {
    /// The aligned 8 bytes at `pa`, if it is RAM.
    fn read_u64(&self, pa: u64) -> Option<u64> {
        let off = pa.checked_sub(RAM_BASE)?;
        if off >= self.size || off % 8 != 0 {
            return None;
        }
        // SAFETY: `host` is QEMU's mapping of the whole of guest RAM (`size` bytes, the
        // board's -m) and the offset is inside it and aligned; the guest may write it
        // concurrently (another thread's DMA), so it is read as an atomic.
        let v =
            unsafe { (*((self.host + off as usize) as *const AtomicU64)).load(Ordering::Relaxed) };
        Some(u64::from_le(v))
    }

    /// The `bytes` (1..=8) at `pa`, little-endian, if they are in one aligned word.
    fn read(&self, pa: u64, bytes: u32) -> Option<u64> {
        let shift = (pa % 8) * 8;
        if pa % 8 + u64::from(bytes) > 8 {
            return None;
        }
        let w = self.read_u64(pa & !7)? >> shift;
        Some(if bytes == 8 {
            w
        } else {
            w & ((1 << (bytes * 8)) - 1)
        })
    }
}

/// Counts of one VA half each: [user (TTBR0), kernel (TTBR1)].
#[derive(Clone, Copy, Default)]
struct Halves {
    c: [Counts; 2],
    tlbi: u64,
}

struct State {
    tlb: Tlb,
    regime: Regime,
    mmu_on: bool,
    ram_size: u64,
    ram: Option<Ram>,
    /// The open phase's id and counts.
    phase: Option<(u64, Halves)>,
    /// Empty the TLB when a phase starts.
    cold: bool,
    total: Halves,
    verified: u64,
    mismatches: u64,
    /// Accesses the walk could not model (another granule, tables outside RAM).
    unmodelled: u64,
}

impl State {
    fn access(&mut self, info: &MemoryInfo, va: u64) {
        if !self.mmu_on {
            return;
        }
        let Some(ram) = self.ram else {
            self.unmodelled += 1;
            return;
        };
        let regime = self.regime;
        let mut miss = None;
        let (outcome, pa) = self.tlb.translate(va, regime.asid(), || {
            match regime.walk(va, |pa| ram.read_u64(pa)) {
                Ok(t) => Some((t.walk, t.pa)),
                Err(m) => {
                    miss = Some(m);
                    None
                }
            }
        });
        match (miss, pa) {
            (Some(Miss::Unmodelled), _) => {
                self.unmodelled += 1;
                return;
            }
            (_, Some(pa)) => self.verify(info, va, pa, ram),
            // The walk faulted where QEMU completed the access.
            (_, None) => self.mismatches += 1,
        }
        let half = (va >> 55 & 1) as usize;
        self.total.c[half].add(outcome);
        if let Some((_, h)) = &mut self.phase {
            h.c[half].add(outcome);
        }
    }

    /// The model's translation (a hit's or a walk's) against QEMU's: the same PA, and
    /// a load's value is what RAM holds there.
    fn verify(&mut self, info: &MemoryInfo, va: u64, pa: u64, ram: Ram) {
        let Some(hw) = info.hwaddr(va) else { return };
        if hw.is_io() {
            return;
        }
        let mut ok = hw.hwaddr() == pa;
        if ok && !info.is_store() {
            let (value, bytes) = match info.value() {
                MemValue::U8(v) => (u64::from(v), 1),
                MemValue::U16(v) => (u64::from(v), 2),
                MemValue::U32(v) => (u64::from(v), 4),
                MemValue::U64(v) => (v, 8),
                MemValue::U128(v) => (v as u64, 8),
            };
            // An access that straddles words is not compared (rare: unaligned).
            if let Some(m) = ram.read(pa, bytes) {
                ok = m == value;
            }
        }
        if ok {
            self.verified += 1;
        } else {
            self.mismatches += 1;
        }
    }

    fn msr(&mut self, reg: Sysreg, v: u64) {
        match reg {
            Sysreg::Ttbr0 => self.regime.ttbr0 = v,
            Sysreg::Ttbr1 => self.regime.ttbr1 = v,
            Sysreg::Tcr => self.regime.tcr = v,
            Sysreg::Sctlr => self.mmu_on = v & 1 != 0,
        }
    }

    fn tlbi(&mut self, kind: TlbiKind, xt: u64) {
        if let Some(op) = decode::tlbi(kind, xt, self.regime.lpa2()) {
            self.tlb.tlbi(op);
        }
        self.total.tlbi += 1;
        if let Some((_, h)) = &mut self.phase {
            h.tlbi += 1;
        }
    }

    fn json(&self, h: &Halves) -> String {
        let cost = self.tlb.preset().cost;
        let half = |c: &Counts| {
            format!(
                "{{\"accesses\":{},\"l1_misses\":{},\"walks\":{},\"walk_loads\":{},\"cycles\":{}}}",
                c.accesses,
                c.l1_misses,
                c.walks,
                c.walk_loads,
                c.cycles(cost)
            )
        };
        format!(
            "\"model\":\"{}\",\"user\":{},\"kernel\":{},\"tlbi\":{}",
            self.tlb.preset().name,
            half(&h.c[0]),
            half(&h.c[1]),
            h.tlbi
        )
    }

    fn start(&mut self, id: u64) {
        if self.cold {
            self.tlb.tlbi(Tlbi::All);
        }
        self.phase = Some((id, Halves::default()));
    }

    fn stop(&mut self) {
        if let Some((id, h)) = self.phase.take() {
            let _ = qemu_plugin_outs(format!("tlbmodel: {{\"phase\":{id},{}}}\n", self.json(&h)));
        }
    }

    fn exit(&self) -> String {
        format!(
            "tlbmodel: {{\"exit\":true,{},\"verified\":{},\"mismatches\":{},\"unmodelled\":{},\"ram_found\":{}}}\n",
            self.json(&self.total),
            self.verified,
            self.mismatches,
            self.unmodelled,
            self.ram.is_some()
        )
    }
}

/// x0..x30, found once the vCPU exists.
static XREGS: OnceLock<Vec<RegisterDescriptor<'static>>> = OnceLock::new();

/// Xn (XZR for 31); 0 if the register cannot be read.
fn x(n: u8) -> u64 {
    let Some(d) = XREGS.get().and_then(|r| r.get(usize::from(n))) else {
        return 0;
    };
    d.read()
        .ok()
        .and_then(|b| {
            b.get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        })
        .unwrap_or(0)
}

struct TlbPlugin {
    state: Option<Arc<Mutex<State>>>,
}

impl Register for TlbPlugin {
    fn register(&mut self, id: PluginId, args: &Args, _info: &Info) -> Result<()> {
        let arg = |k: &str| args.parsed.get(k);
        let name = match arg("model") {
            Some(Value::String(s)) => s.clone(),
            _ => "cortex-a76".into(),
        };
        let Some(mut preset) = Preset::named(&name) else {
            // QEMU's log may be off: say it on stderr, and stop before the guest runs.
            let names: Vec<_> = Preset::ALL.iter().map(|p| p().name).collect();
            eprintln!(
                "tlbmodel: unknown model {name} (known: {})",
                names.join(", ")
            );
            std::process::exit(2);
        };
        if let Some(Value::Integer(n)) = arg("walk_cache") {
            preset.walk_cache = (*n).clamp(0, 4096) as usize;
        }
        let ram_mib = match arg("ram_mib") {
            Some(Value::Integer(n)) if *n > 0 => *n as u64,
            _ => 1024,
        };
        let state = Arc::new(Mutex::new(State {
            tlb: Tlb::new(preset),
            regime: Regime::default(),
            mmu_on: false,
            ram_size: ram_mib << 20,
            ram: None,
            phase: None,
            cold: matches!(arg("cold"), Some(Value::Bool(true))),
            total: Halves::default(),
            verified: 0,
            mismatches: 0,
            unmodelled: 0,
        }));
        let at_exit = state.clone();
        qemu_plugin_register_atexit_cb(id, move |_| {
            let s = at_exit.lock().expect("state");
            let _ = qemu_plugin_outs(s.exit());
        })?;
        self.state = Some(state);
        Ok(())
    }
}

impl HasCallbacks for TlbPlugin {
    fn on_vcpu_init(&mut self, _id: PluginId, _vcpu: VCPUIndex) -> Result<()> {
        if XREGS.get().is_none() {
            let all = qemu_plugin_get_registers()?;
            let xs: Vec<_> = (0..31)
                .filter_map(|n| all.iter().find(|d| d.name == format!("x{n}")).cloned())
                .collect();
            let _ = XREGS.set(xs);
        }
        Ok(())
    }

    fn on_translation_block_translate(
        &mut self,
        _id: PluginId,
        tb: TranslationBlock,
    ) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        for insn in tb.instructions() {
            {
                let mut s = state.lock().expect("state");
                let va = insn.vaddr();
                if s.ram.is_none()
                    && !s.mmu_on
                    && (RAM_BASE..RAM_BASE + s.ram_size).contains(&va)
                    && insn.haddr() != 0
                {
                    s.ram = Some(Ram {
                        host: insn.haddr() as usize - (va - RAM_BASE) as usize,
                        size: s.ram_size,
                    });
                }
            }
            let m = state.clone();
            insn.register_memory_access_callback(
                move |_, info, va| m.lock().expect("state").access(&info, va),
                MemRW::QEMU_PLUGIN_MEM_RW,
            );
            let bytes = insn.data();
            let Some(word) = bytes
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            else {
                continue;
            };
            let Some(op) = decode::decode(word) else {
                continue;
            };
            let s = state.clone();
            let read = |rt: u8| if rt == 31 { 0 } else { x(rt) };
            insn.register_execute_callback_flags(
                move |_| {
                    let mut s = s.lock().expect("state");
                    match op {
                        Insn::Msr(reg, rt) => s.msr(reg, read(rt)),
                        Insn::Tlbi(kind, rt) => s.tlbi(kind, read(rt)),
                        Insn::MarkStart => s.start(x(27)),
                        Insn::MarkStop => s.stop(),
                    }
                },
                CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
            );
        }
        Ok(())
    }
}

register!(TlbPlugin { state: None });
