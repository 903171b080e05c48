"""Media quality: RFC 3550 receive statistics, E-model MOS, captures, quality logs.

Modules (pure, no I/O or clock of their own unless named):
  records     PACKET_DTYPE, the row the media hot path appends per packet
  engine      QualityEngine: batches of rows in, StreamSummary out
  sequence    RFC 3550 A.1/A.3 (sequence validation, loss), vectorized
  bursts      RFC 3611 burst/gap densities, G.107 BurstR
  rtt         RTT from RTCP report blocks
  mos         ITU-T G.107 E-model and the codec table
  payload     RTP clock rates (RFC 3551 static types, encoding names)
  pcap        pcap/pcapng reading and a classic-pcap writer (file I/O)
  rtpstreams  RTP stream discovery in captures, SDP learning, analyse_capture
  wireshark   a tshark-compatible view of one stream, for cross-checks
  export      the per-minute quality-log JSON record and its writer (file I/O)
Import the submodules directly; this package imports nothing (scipy is not free).
"""
