; Hand-written: a 1x1 convolution of a 2x2 image with 8 channels (channel-last, zero point 3)
; into 4 output channels, weights and bias/scale from the data section, requantized to int8.
.arch preset=default
.dram 512
.data_size 64
; weights [4][8]: row k holds k+1 in every column, except row 3 which is 1, -1, 1, -1, ...
.data 0x0 "01010101010101010202020202020202030303030303030301ff01ff01ff01ff"
; bias int32 [4] = 0, 10, -10, 0 at 0x20; scale float32 [4] = 0.5 each at 0x30
.data 0x20 "000000000a000000f6ffffff00000000"
.data 0x30 "0000003f0000003f0000003f0000003f"
.input x addr=0x100 shape=[1,8,2,2] view=[1,8,2,2] perm=[0,2,3,1] scale=1.0 zp=3
.output y addr=0x140 shape=[1,4,2,2] view=[1,4,2,2] perm=[0,2,3,1] scale=1.0 zp=-1
.core 0
.layer conv op="conv2d" macs=128 info="hand-written 1x1 conv"
    load dram_addr=0x0 spad_addr=0x1000 rows=1 row_bytes=64 dram_stride=0 spad_stride=0
    load dram_addr=0x100 spad_addr=0x0 rows=1 row_bytes=32 dram_stride=0 spad_stride=0 signal=1
    matmul w_addr=0x1000 x_addr=0x0 acc_addr=0 k=4 out_h=2 out_w=2 in_h=2 in_w=2 in_c=8 kernel_h=1 kernel_w=1 stride_h=1 stride_w=1 dil_h=1 dil_w=1 pad_top=0 pad_left=0 x_zp=3 accumulate=0 fmt=0 depthwise=0 wait=1:1
    requant acc_addr=0 dst_addr=0x200 cols=4 k=4 bias_addr=0x1020 scale_addr=0x1030 zp=-1 lo=-128 hi=127 out32=0 signal=2
    store dram_addr=0x140 spad_addr=0x200 rows=1 row_bytes=16 dram_stride=0 spad_stride=0 wait=2:1 signal=3
.endlayer
    halt wait=3:1
