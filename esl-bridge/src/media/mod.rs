//! The unicast media leg: raw L16 audio between FreeSWITCH and us over UDP.
