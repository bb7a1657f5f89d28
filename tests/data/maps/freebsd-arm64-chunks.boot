real memory  = 4294967296 (4096 MB)
Physical memory chunk(s):
0x00000040000000 - 0x000000400fffff, 1048576 bytes (256 pages)
0x00000041c1e000 - 0x0000013e77ffff, 4239794176 bytes (1035106 pages)
0x0000013fff0000 - 0x0000013fffffff, 65536 bytes (16 pages)
avail memory = 4151070720 (3958 MB)
