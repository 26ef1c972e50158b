#include "textflag.h"

DATA posinf<>+0(SB)/4, $0x7f800000
GLOBL posinf<>(SB), RODATA|NOPTR, $4

// func minAVX2(x []float32) float32
// len(x) is a multiple of 16 and at least 16. NaNs are skipped: VMINPS
// returns its second source (Intel order), the accumulator, when either
// is NaN.
TEXT ·minAVX2(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS posinf<>(SB), Y0
	VMOVAPS Y0, Y1
	XORQ AX, AX
loop:
	VMOVUPS (SI)(AX*4), Y2
	VMOVUPS 32(SI)(AX*4), Y3
	VMINPS Y0, Y2, Y0
	VMINPS Y1, Y3, Y1
	ADDQ $16, AX
	CMPQ AX, CX
	JLT loop
	VMINPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMINPS X1, X0, X0
	VPERMILPS $0x4e, X0, X1
	VMINPS X1, X0, X0
	VPERMILPS $0xb1, X0, X1
	VMINPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func firstEqAVX2(x []float32, v float32) int
// The index of the first element of x equal to v, or -1; len(x) is a
// multiple of 8.
TEXT ·firstEqAVX2(SB), NOSPLIT, $0-40
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS v+24(FP), Y1
	XORQ AX, AX
	TESTQ CX, CX
	JEQ none
loop:
	VCMPPS $0, (SI)(AX*4), Y1, Y2
	VMOVMSKPS Y2, DX
	TESTL DX, DX
	JNE found
	ADDQ $8, AX
	CMPQ AX, CX
	JLT loop
none:
	VZEROUPPER
	MOVQ $-1, ret+32(FP)
	RET
found:
	BSFL DX, DX
	ADDQ DX, AX
	VZEROUPPER
	MOVQ AX, ret+32(FP)
	RET
