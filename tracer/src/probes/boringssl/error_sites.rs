//! The `OPENSSL_PUT_ERROR` sites: the arguments set up around each `lea` of the file name.
use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register};

use super::{control_flow::Function, scan::Text};

/// One `OPENSSL_PUT_ERROR` site: the arguments set up around the `lea` of the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorSite {
    pub lea: u64,
    pub lib: Option<u32>,
    pub reason: Option<u32>,
    pub line: Option<u32>,
    /// The function called with these arguments (ERR_put_error).
    pub call: Option<u64>,
}

impl ErrorSite {
    /// The reason code, when the site is a well-formed ERR_LIB_SSL report calling `err_put`.
    #[cfg(test)]
    pub(super) fn ssl_reason(&self, err_put: u64) -> Option<u32> {
        self.reason_of(super::ERR_LIB_SSL, err_put)
    }

    /// The reason code, when the site is a well-formed report of library `lib` (ERR_LIB_SSL
    /// for ssl_lib.cc, ERR_LIB_CIPHER for aead.cc.inc) calling `err_put`.
    pub(super) fn reason_of(&self, lib: u32, err_put: u64) -> Option<u32> {
        (self.lib == Some(lib) && self.call == Some(err_put) && self.line.is_some()).then_some(self.reason)?
    }
}

#[derive(Default)]
pub(super) struct Args {
    edi: Option<u32>,
    edx: Option<u32>,
    r8d: Option<u32>,
}

impl Args {
    pub(super) fn slot(&mut self, reg: Register) -> Option<&mut Option<u32>> {
        match reg.full_register() {
            Register::RDI => Some(&mut self.edi),
            Register::RDX => Some(&mut self.edx),
            Register::R8 => Some(&mut self.r8d),
            _ => None,
        }
    }

    pub(super) fn apply(&mut self, ins: &Instruction) {
        if ins.op_count() == 0 || ins.op0_kind() != OpKind::Register {
            return;
        }
        let reg = ins.op0_register();
        let value = match ins.code() {
            Code::Mov_r32_imm32 => Some(ins.immediate32()),
            Code::Mov_rm64_imm32 => Some(ins.immediate32()),
            Code::Xor_r32_rm32 | Code::Xor_rm32_r32
                if ins.op1_kind() == OpKind::Register && ins.op1_register() == reg =>
            {
                Some(0)
            }
            // cmp/test read their first operand; everything else is taken as a write.
            Code::Cmp_r32_rm32 | Code::Cmp_rm32_r32 | Code::Cmp_rm32_imm32 | Code::Cmp_rm32_imm8 => return,
            Code::Test_rm32_r32 | Code::Test_rm32_imm32 | Code::Test_rm64_r64 => return,
            _ => None,
        };
        if let Some(slot) = self.slot(reg) {
            *slot = value;
        }
    }
}

/// Read an error site's arguments: the straight-line instructions before the `lea` in the
/// same block, then forward from it to the call (following up to two jumps to a shared call).
pub(crate) fn parse_site(text: Text, func: &Function, lea: u64) -> ErrorSite {
    let mut args = Args::default();
    let mut before = Vec::new();
    let mut cur = lea;
    while before.len() < 12 {
        match func.insns.range(..cur).next_back() {
            Some((&ip, ins)) if ins.next_ip() == cur && ins.flow_control() == FlowControl::Next => {
                before.push(*ins);
                cur = ip;
            }
            _ => break,
        }
    }
    for ins in before.iter().rev() {
        args.apply(ins);
    }
    let mut call = None;
    let mut ip = lea;
    let mut jumps = 0;
    let mut steps = 0;
    'outer: while text.contains(ip) && steps < 24 {
        let mut dec = Decoder::with_ip(64, text.from(ip), ip, DecoderOptions::NONE);
        let mut ins = Instruction::default();
        while steps < 24 {
            steps += 1;
            dec.decode_out(&mut ins);
            if ins.is_invalid() {
                break 'outer;
            }
            match ins.flow_control() {
                FlowControl::Next => args.apply(&ins),
                FlowControl::Call if ins.code() == Code::Call_rel32_64 => {
                    call = Some(ins.near_branch_target());
                    break 'outer;
                }
                FlowControl::UnconditionalBranch if jumps < 2 => {
                    jumps += 1;
                    ip = ins.near_branch_target();
                    continue 'outer;
                }
                _ => break 'outer,
            }
        }
    }
    ErrorSite { lea, lib: args.edi, reason: args.edx, line: args.r8d, call }
}
