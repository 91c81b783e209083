//! velochat: a WhatsApp conversation engine for vehicle dealerships.
