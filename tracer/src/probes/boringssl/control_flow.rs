//! Following one function's control flow from its entry with a decoder.
use std::collections::BTreeMap;

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction};

use super::{MAX_FUNCTION_INSNS, scan::Text};

/// One function, decoded by following its branches from the entry.
#[derive(Debug)]
pub(crate) struct Function {
    pub insns: BTreeMap<u64, Instruction>,
}

impl Function {
    /// Direct call targets in address order.
    pub fn calls(&self) -> Vec<u64> {
        self.insns.values().filter(|i| i.code() == Code::Call_rel32_64).map(|i| i.near_branch_target()).collect()
    }

    /// The number of 8-byte stack arguments read: the highest `[rbp + disp]` operand with
    /// `disp >= 0x10` (above the saved rbp and the return address), as slots.
    pub fn stack_args(&self) -> u32 {
        let mut top = 0u64;
        for ins in self.insns.values() {
            for op in 0..ins.op_count() {
                if ins.op_kind(op) != iced_x86::OpKind::Memory || ins.memory_base() != iced_x86::Register::RBP || ins.memory_index() != iced_x86::Register::None {
                    continue;
                }
                let disp = ins.memory_displacement64() as i64;
                if (0x10..0x10 + 8 * 64).contains(&disp) {
                    top = top.max((disp as u64 - 0x10) / 8 + 1);
                }
            }
        }
        top as u32
    }
}

/// Decode the function at `start` by following its control flow: conditional and
/// unconditional jumps within `[start, limit)` that do not land on another function's entry;
/// a block ends at ret, jmp, int3/ud2, an indirect jump, or where another function begins.
pub(crate) fn follow_function(text: Text, start: u64, limit: u64) -> Result<Function, String> {
    let limit = limit.min(text.end());
    // Another function's entry: aligned, and a prologue or right after int3 padding.
    let is_entry = |a: u64| a != start && a.is_multiple_of(16) && (text.is_prologue(a) || text.is_padded(a));
    let mut insns = BTreeMap::new();
    let mut work = vec![start];
    while let Some(block) = work.pop() {
        if insns.contains_key(&block) {
            continue;
        }
        let mut dec = Decoder::with_ip(64, &text.from(block)[..(limit - block) as usize], block, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        let mut after_call = false;
        loop {
            let ip = dec.ip();
            if ip >= limit {
                return Err(format!("runs past {limit:#x} (the next function boundary)"));
            }
            if insns.contains_key(&ip) {
                break;
            }
            if ip != block && text.is_prologue(ip) {
                // A call to a noreturn function (__stack_chk_fail, abort) ending a function
                // that the next one follows without padding. Frame-pointer code makes no call
                // before its own prologue, so anything else is a decoding error.
                if after_call {
                    break;
                }
                return Err(format!("falls through into the function at {ip:#x}"));
            }
            dec.decode_out(&mut ins);
            if ins.is_invalid() {
                if dec.last_error() == iced_x86::DecoderError::NoMoreBytes {
                    return Err(format!("runs past {limit:#x} (the next function boundary)"));
                }
                return Err(format!("invalid instruction at {ip:#x}"));
            }
            insns.insert(ip, ins);
            after_call = matches!(ins.flow_control(), FlowControl::Call | FlowControl::IndirectCall);
            if insns.len() > MAX_FUNCTION_INSNS {
                return Err(format!("more than {MAX_FUNCTION_INSNS} instructions"));
            }
            match ins.flow_control() {
                FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall | FlowControl::XbeginXabortXend => {}
                FlowControl::ConditionalBranch => {
                    let t = ins.near_branch_target();
                    if t >= start && t < limit && !is_entry(t) {
                        work.push(t);
                    }
                }
                FlowControl::UnconditionalBranch => {
                    let t = ins.near_branch_target();
                    if t >= start && t < limit && !is_entry(t) {
                        work.push(t);
                    }
                    break;
                }
                FlowControl::IndirectBranch | FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => {
                    break;
                }
            }
        }
    }
    // Overlapping decodes mean the entry was not a real instruction boundary.
    let mut prev_end = 0u64;
    for (ip, ins) in &insns {
        if *ip < prev_end {
            return Err(format!("overlapping instructions at {ip:#x}"));
        }
        prev_end = ins.next_ip();
    }
    Ok(Function { insns })
}
