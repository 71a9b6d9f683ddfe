; Hand-written: y = relu(0.5 * a + 0.25 * b) on 32 int8 values, written without the compiler.
; Three queues: the load queue signals counter 1, compute waits for it and signals 2,
; the store waits for 2 and signals 3, and halt waits for the store.
.arch preset=default
.dram 256
.input a addr=0x40 shape=[1,32] scale=1.0 zp=0
.input b addr=0x80 shape=[1,32] scale=1.0 zp=0
.output y addr=0xc0 shape=[1,32] scale=1.0 zp=0
.core 0
.layer add op="add" macs=0 info="hand-written"
    load dram_addr=0x40 spad_addr=0x0 rows=1 row_bytes=32 dram_stride=0 spad_stride=0
    load dram_addr=0x80 spad_addr=0x20 rows=1 row_bytes=32 dram_stride=0 spad_stride=0 signal=1
    add a_addr=0x0 b_addr=0x20 dst_addr=0x40 count=32 za=0 zb=0 zc=0 ma=0.5 mb=0.25 relu=1 hi=127 mode=0 sc=0.0 wait=1:1 signal=2
    store dram_addr=0xc0 spad_addr=0x40 rows=1 row_bytes=32 dram_stride=0 spad_stride=0 wait=2:1 signal=3
.endlayer
    halt wait=3:1
