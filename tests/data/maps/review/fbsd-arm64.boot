---<<BOOT>>---
GDB: debug ports: uart
KDB: debugger backends: ddb gdb
FreeBSD 14.0-RELEASE arm64
real memory  = 4276924416 (4078 MB)
Physical memory chunk(s):
  0x00000000200000 - 0x000000efffffff, 4024434688 bytes (982528 pages)
  0x000000f2000000 - 0x000000f4c77fff, 46628864 bytes (11384 pages)
avail memory = 4041048064 (3853 MB)
