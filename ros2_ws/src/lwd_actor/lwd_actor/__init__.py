"""Onboard lwd nodes: 30 Hz chunked joint-position control from an ONNX flow policy, pedal takeover, labelling and episode recording."""
