/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tick — a tiny multiboot (v1) guest for the system test (nested TCG).
 *
 * On COM1 (0x3f8, 115200 8N1) it prints once
 *     BOOT <token> [<-append text>]
 * (token: the TSC at entry, so every cold boot prints a different one), then
 *     tick N
 * every 0.5 s of guest time, N counting up from 1. The counter lives in RAM:
 * a guest resumed from a checkpoint continues from where it was (no second
 * BOOT line), a guest that was restarted prints BOOT and "tick 1" again.
 *
 * Time comes from the PIT (IRQ0, 20 Hz) and the CPU sleeps in hlt between
 * interrupts, so the guest costs almost nothing even in TCG inside TCG and its
 * pace does not depend on how fast the emulation runs. QEMU stops the PIT
 * while the VM is stopped, so a checkpoint pause does not make it jump.
 *
 * Build: as --32 tick.S -o tick.o && ld -m elf_i386 -n -T tick.ld tick.o -o tick.elf
 * Run:   qemu-system-x86_64 -machine pc,accel=tcg -kernel tick.elf -append NAME \
 *            -serial stdio -display none -nodefaults
 */
	.set MB_MAGIC,     0x1badb002
	.set MB_FLAGS,     0x00000000      /* ELF image: QEMU reads the program headers */
	.set COM1,         0x3f8
	.set PIT_HZ,       20
	.set PIT_DIVISOR,  1193182 / PIT_HZ
	.set IRQS_PER_TICK, PIT_HZ / 2     /* a tick every 0.5 s */
	.set CODE_SEL,     0x08
	.set DATA_SEL,     0x10

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.code32
	.text
	.globl _start
_start:
	cli
	mov	%eax, mb_eax
	mov	%ebx, mb_info
	/* The boot loader's GDT may be gone: iret reloads CS from ours. */
	lgdt	gdt_desc
	ljmp	$CODE_SEL, $1f
1:	mov	$DATA_SEL, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %fs
	mov	%ax, %gs
	mov	%ax, %ss
	mov	$stack_top, %esp
	rdtsc
	mov	%eax, boot_token

	call	serial_init
	call	idt_init
	call	pic_init
	call	pit_init

	mov	$s_boot, %esi
	call	puts
	mov	boot_token, %eax
	call	puthex
	/* multiboot info flag bit 2: cmdline present */
	cmpl	$0x2badb002, mb_eax
	jne	2f
	mov	mb_info, %ebx
	testl	$4, (%ebx)
	jz	2f
	mov	16(%ebx), %esi
	test	%esi, %esi
	jz	2f
3:	lodsb				/* skip the first word (the image path) */
	test	%al, %al
	jz	2f
	cmp	$' ', %al
	jne	3b
	cmpb	$0, (%esi)
	je	2f
	mov	$' ', %al
	call	putc
	call	puts
2:	mov	$'\n', %al
	call	putc

	movl	$IRQS_PER_TICK, next_at
	sti
main_loop:
	hlt
	mov	jiffies, %eax
	cmp	next_at, %eax
	jb	main_loop
	addl	$IRQS_PER_TICK, next_at
	incl	ticks
	mov	$s_tick, %esi
	call	puts
	mov	ticks, %eax
	call	putdec
	mov	$'\n', %al
	call	putc
	jmp	main_loop

/* ---- COM1 ---- */
serial_init:
	mov	$COM1 + 1, %dx;	xor %al, %al;	outb %al, %dx	/* IER off */
	mov	$COM1 + 3, %dx;	mov $0x80, %al;	outb %al, %dx	/* DLAB */
	mov	$COM1 + 0, %dx;	mov $1, %al;	outb %al, %dx	/* 115200 */
	mov	$COM1 + 1, %dx;	xor %al, %al;	outb %al, %dx
	mov	$COM1 + 3, %dx;	mov $3, %al;	outb %al, %dx	/* 8N1 */
	mov	$COM1 + 2, %dx;	mov $0xc7, %al;	outb %al, %dx	/* FIFO */
	mov	$COM1 + 4, %dx;	mov $3, %al;	outb %al, %dx	/* DTR RTS */
	ret

/* putc: %al; clobbers %dx */
putc:
	push	%eax
	mov	$COM1 + 5, %dx
1:	inb	%dx, %al
	test	$0x20, %al
	jz	1b
	pop	%eax
	mov	$COM1, %dx
	outb	%al, %dx
	ret

/* puts: NUL-terminated string at %esi */
puts:
	push	%eax
1:	lodsb
	test	%al, %al
	jz	2f
	call	putc
	jmp	1b
2:	pop	%eax
	ret

/* putdec: unsigned %eax in decimal */
putdec:
	push	%ebx
	push	%ecx
	push	%edx
	mov	$10, %ebx
	xor	%ecx, %ecx
1:	xor	%edx, %edx
	div	%ebx
	push	%edx
	inc	%ecx
	test	%eax, %eax
	jnz	1b
2:	pop	%eax
	add	$'0', %al
	call	putc
	loop	2b
	pop	%edx
	pop	%ecx
	pop	%ebx
	ret

/* puthex: %eax as 8 hex digits */
puthex:
	push	%ebx
	push	%ecx
	mov	%eax, %ebx
	mov	$8, %ecx
1:	rol	$4, %ebx
	mov	%ebx, %eax
	and	$0xf, %eax
	mov	hexdigits(%eax), %al
	call	putc
	loop	1b
	pop	%ecx
	pop	%ebx
	ret

/* ---- interrupts ---- */
/* set_gate: vector %ecx, handler %eax */
set_gate:
	lea	idt(,%ecx,8), %edi
	mov	%ax, (%edi)
	movw	$CODE_SEL, 2(%edi)
	movw	$0x8e00, 4(%edi)		/* present, DPL 0, 32-bit interrupt gate */
	shr	$16, %eax
	mov	%ax, 6(%edi)
	ret

idt_init:
	xor	%ecx, %ecx
1:	mov	$isr_fault, %eax
	cmp	$32, %ecx
	jb	2f
	mov	$isr_ignore, %eax
	cmp	$0x20, %ecx
	jne	2f
	mov	$isr_timer, %eax
2:	call	set_gate
	inc	%ecx
	cmp	$256, %ecx
	jb	1b
	lidt	idt_desc
	ret

/* 8259A: master at 0x20, slave at 0x28, only IRQ0 unmasked */
pic_init:
	mov	$0x11, %al;	outb %al, $0x20;	outb %al, $0xa0
	mov	$0x20, %al;	outb %al, $0x21
	mov	$0x28, %al;	outb %al, $0xa1
	mov	$0x04, %al;	outb %al, $0x21
	mov	$0x02, %al;	outb %al, $0xa1
	mov	$0x01, %al;	outb %al, $0x21;	outb %al, $0xa1
	mov	$0xfe, %al;	outb %al, $0x21
	mov	$0xff, %al;	outb %al, $0xa1
	ret

/* PIT channel 0, mode 2 (rate generator), PIT_HZ */
pit_init:
	mov	$0x34, %al
	outb	%al, $0x43
	mov	$PIT_DIVISOR & 0xff, %al
	outb	%al, $0x40
	mov	$PIT_DIVISOR >> 8, %al
	outb	%al, $0x40
	ret

isr_timer:
	push	%eax
	incl	jiffies
	mov	$0x20, %al
	outb	%al, $0x20			/* EOI */
	pop	%eax
	iret

isr_ignore:					/* spurious IRQ 7/15, unused vectors */
	iret

isr_fault:
	cli
	mov	$s_fault, %esi
	call	puts
1:	hlt
	jmp	1b

	.section .rodata
s_boot:	.asciz	"BOOT "
s_tick:	.asciz	"tick "
s_fault: .asciz	"\nFAULT: unexpected CPU exception, halted\n"
hexdigits: .ascii "0123456789abcdef"

	.data
	.align 8
gdt:
	.quad	0
	.quad	0x00cf9a000000ffff		/* 0x08 code: flat 4 GiB, 32-bit */
	.quad	0x00cf92000000ffff		/* 0x10 data */
gdt_end:
gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
	.align 4
idt_desc:
	.word	256 * 8 - 1
	.long	idt
ticks:	.long	0				/* the counter that must survive */
jiffies: .long	0
next_at: .long	0
boot_token: .long 0
mb_eax:	.long	0
mb_info: .long	0

	.bss
	.align 16
idt:	.skip	256 * 8
	.skip	4096
stack_top:
