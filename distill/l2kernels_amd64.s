#include "textflag.h"

// The codeword kernels of the L2 student (codewords.go), four floats at a
// time in SSE, which every amd64 has. dsub is a positive multiple of 4 and
// len(code) at least 1; the Go side checks both and the slices' lengths.
// Multiplies and adds are separate instructions, as Go's own loop does them,
// so the results are the same bits.

// func subCodewordsSSE(r, cb []float32, code []uint8, ksub, dsub int)
TEXT ·subCodewordsSSE(SB), NOSPLIT, $0-88
	MOVQ r_base+0(FP), SI
	MOVQ cb_base+24(FP), DI
	MOVQ code_base+48(FP), BX
	MOVQ code_len+56(FP), CX
	MOVQ ksub+72(FP), R10
	MOVQ dsub+80(FP), R11
	SHLQ $2, R11          // bytes per codeword
	IMULQ R11, R10        // bytes per sub-space's codebook
subLoop:
	MOVBQZX (BX), AX
	IMULQ R11, AX
	LEAQ (DI)(AX*1), DX
	XORQ R12, R12
subInner:
	MOVUPS (SI)(R12*1), X0
	MOVUPS (DX)(R12*1), X1
	SUBPS X1, X0
	MOVUPS X0, (SI)(R12*1)
	ADDQ $16, R12
	CMPQ R12, R11
	JLT subInner
	ADDQ R11, SI
	ADDQ R10, DI
	INCQ BX
	DECQ CX
	JNZ subLoop
	RET

// func addCodewordsSSE(gc, r []float32, alpha float32, code []uint8, ksub, dsub int)
TEXT ·addCodewordsSSE(SB), NOSPLIT, $0-96
	MOVQ gc_base+0(FP), DI
	MOVQ r_base+24(FP), SI
	MOVSS alpha+48(FP), X2
	SHUFPS $0, X2, X2
	MOVQ code_base+56(FP), BX
	MOVQ code_len+64(FP), CX
	MOVQ ksub+80(FP), R10
	MOVQ dsub+88(FP), R11
	SHLQ $2, R11
	IMULQ R11, R10
addLoop:
	MOVBQZX (BX), AX
	IMULQ R11, AX
	LEAQ (DI)(AX*1), DX
	XORQ R12, R12
addInner:
	MOVUPS (SI)(R12*1), X0
	MULPS X2, X0
	MOVUPS (DX)(R12*1), X1
	ADDPS X0, X1
	MOVUPS X1, (DX)(R12*1)
	ADDQ $16, R12
	CMPQ R12, R11
	JLT addInner
	ADDQ R11, SI
	ADDQ R10, DI
	INCQ BX
	DECQ CX
	JNZ addLoop
	RET

// L2LANE adds the squares of four differences q - x at byte offset off
// from AX to the sums in acc (x and y are scratch).
#define L2LANE(off, x, y, acc) \
	MOVUPS off(SI)(AX*1), x; \
	MOVUPS off(DI)(AX*1), y; \
	SUBPS y, x; \
	MULPS x, x; \
	ADDPS x, acc

// func l2SqSSE(q, x []float32) float32
// ||q - x||² over the first len(q) &^ 15 entries (at least 16), in four
// running sums of four.
TEXT ·l2SqSSE(SB), NOSPLIT, $0-52
	MOVQ q_base+0(FP), SI
	MOVQ q_len+8(FP), CX
	MOVQ x_base+24(FP), DI
	ANDQ $-16, CX
	SHLQ $2, CX
	XORPS X0, X0
	XORPS X1, X1
	XORPS X2, X2
	XORPS X3, X3
	XORQ AX, AX
l2Loop:
	L2LANE(0, X4, X8, X0)
	L2LANE(16, X5, X9, X1)
	L2LANE(32, X6, X10, X2)
	L2LANE(48, X7, X11, X3)
	ADDQ $64, AX
	CMPQ AX, CX
	JLT l2Loop
	ADDPS X1, X0
	ADDPS X3, X2
	ADDPS X2, X0
	MOVAPS X0, X1
	MOVHLPS X0, X1
	ADDPS X1, X0
	MOVAPS X0, X1
	SHUFPS $0x55, X1, X1
	ADDSS X1, X0
	MOVSS X0, ret+48(FP)
	RET
