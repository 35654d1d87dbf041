fn main() {
    println!("Event {} Delivery {} Text {} DateTime {} DeliveryStatus {} OptIp {} Map {}",
        std::mem::size_of::<cmc_webhook::Event>(), std::mem::size_of::<cmc_webhook::Delivery>(),
        std::mem::size_of::<cmc_webhook::Text>(), std::mem::size_of::<jiff::civil::DateTime>(),
        std::mem::size_of::<cmc_webhook::DeliveryStatus>(), std::mem::size_of::<Option<std::net::IpAddr>>(),
        std::mem::size_of::<serde_json::Map<String, serde_json::Value>>());
}
